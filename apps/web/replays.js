// My replays: the patient's consultations, a page at a time, newest first.

import { h, label, say, time } from "./dom.js";

const DATE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

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
        const first = items[0].querySelector("a") || items[0];
        if (first === items[0]) {
          first.setAttribute("tabindex", "-1");
        }
        first.focus();
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
  const reason = consultation.reason || "Consultation";
  const date = consultation.scheduledAt ? DATE.format(new Date(consultation.scheduledAt)) : "";
  // The date inside the link: three "Follow-up" links read apart. A cancelled consultation
  // with nothing recorded has nothing to open: its title is no link.
  const title = date ? `${reason}, ${date}` : reason;
  const opens = !(consultation.status === "CANCELLED" && segments === 0);
  return h(
    "li",
    { class: opens ? "card" : "card inactive", "data-id": consultation.id },
    h(
      "h2",
      {},
      opens ? h("a", { href: `#replay=${encodeURIComponent(consultation.id)}` }, title) : title,
    ),
    h("p", { class: "meta" }, time(consultation.scheduledAt), " · ", details.join(" · ")),
  );
}
