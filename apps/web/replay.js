// One consultation's replay: what it was, and its recording's segments, played in order.

import { duration, h, label, say, time } from "./dom.js";
import { SegmentPlayer } from "./player.js";

export class ReplayView {
  constructor(gateway, { onSignInRequired }) {
    this.gateway = gateway;
    this.heading = document.getElementById("replay-heading");
    this.meta = document.getElementById("replay-meta");
    this.summary = document.getElementById("replay-summary");
    this.playerBox = document.getElementById("replay-player");
    this.segmentList = document.getElementById("segments");
    this.status = document.getElementById("player-status");
    this.player = new SegmentPlayer(document.getElementById("player"), gateway, {
      refresh: () => this.refresh(),
      onSegment: (index) => this.mark(index),
      onMessage: (text) => say(this.status, text),
      onSignInRequired,
    });
    this.id = null;
  }

  async fetch(id) {
    const data = await this.gateway.run("Replay", { id });
    return data.consultation;
  }

  async refresh() {
    const consultation = await this.fetch(this.id);
    return consultation ? consultation.recordings || [] : [];
  }

  close() {
    this.player.stop();
    this.id = null;
  }

  async open(id) {
    this.close();
    this.id = id;
    this.heading.textContent = "Replay";
    this.meta.replaceChildren();
    this.summary.textContent = "";
    this.segmentList.replaceChildren();
    this.playerBox.hidden = true;
    say(this.status, "Loading…");
    const consultation = await this.fetch(id);
    if (this.id !== id) {
      return;
    }
    if (!consultation) {
      this.heading.textContent = "Consultation not found";
      say(this.status, "This consultation does not exist or is not yours to see.");
      return;
    }
    this.heading.textContent = consultation.reason || "Consultation";
    this.meta.append(time(consultation.scheduledAt));
    this.summary.textContent = consultation.summary || "";
    const recordings = consultation.recordings || [];
    if (!recordings.length) {
      say(this.status, "This consultation has no recording.");
      return;
    }
    this.player.load(recordings);
    this.segmentList.replaceChildren(
      ...this.player.segments.map((segment, index) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              "data-segment": index,
              onclick: () => this.player.play(index),
            },
            `Play segment ${index + 1}: ${label(segment.mode)}, ` +
              duration(segment.durationSeconds),
          ),
        ),
      ),
    );
    this.playerBox.hidden = false;
    const count = recordings.length;
    say(this.status, `${count} ${count === 1 ? "segment" : "segments"}, played in order.`);
  }

  mark(index) {
    for (const button of this.segmentList.querySelectorAll("button")) {
      if (Number(button.dataset.segment) === index) {
        button.setAttribute("aria-current", "true");
      } else {
        button.removeAttribute("aria-current");
      }
    }
  }
}
