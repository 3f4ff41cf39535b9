// My replays: the patient's consultations, a page at a time, newest first.

import { h, label, say, time } from "./dom.js";

export class ReplaysView {
  constructor(gateway, { pageSize, onError }) {
    this.gateway = gateway;
    this.pageSize = pageSize;
    this.list = document.getElementById("replays-list");
    this.status = document.getElementById("replays-status");
    this.more = document.getElementById("replays-more");
    this.more.addEventListener("click", () => this.loadMore(true).catch(onError));
    this.reset();
  }

  reset() {
    this.list.replaceChildren();
    this.after = null;
    this.loaded = false;
    this.more.hidden = true;
    say(this.status, "");
  }

  async open() {
    if (!this.loaded) {
      this.loaded = true;
      await this.loadMore(false);
    }
  }

  async loadMore(focusNew) {
    this.more.disabled = true;
    say(this.status, "Loading…");
    try {
      const data = await this.gateway.run("MyReplays", { first: this.pageSize, after: this.after });
      const page = data.consultations;
      const items = page.edges.map((edge) => edge.node).filter(Boolean).map(item);
      this.list.append(...items);
      this.after = page.pageInfo.endCursor;
      this.more.hidden = !page.pageInfo.hasNextPage;
      const count = this.list.children.length;
      say(
        this.status,
        count === 0 ? "You have no consultations yet." : shown(count, !this.more.hidden),
      );
      if (focusNew && items.length) {
        items[0].querySelector("a").focus();
      }
    } finally {
      this.more.disabled = false;
    }
  }
}

function shown(count, more) {
  const noun = count === 1 ? "consultation" : "consultations";
  return `Showing ${count} ${noun}${more ? "; more are available." : "."}`;
}

function item(consultation) {
  const segments = (consultation.recordings || []).length;
  const details = [
    consultation.clinician ? consultation.clinician.displayName : null,
    label(consultation.status),
    label(consultation.mode),
    segments ? `${segments} ${segments === 1 ? "segment" : "segments"}` : "No recording",
  ].filter(Boolean);
  return h(
    "li",
    { class: "card", "data-id": consultation.id },
    h(
      "h2",
      {},
      h(
        "a",
        { href: `#replay=${encodeURIComponent(consultation.id)}` },
        consultation.reason || "Consultation",
      ),
    ),
    h("p", { class: "meta" }, time(consultation.scheduledAt), " · ", details.join(" · ")),
  );
}
