// Who saw my record: the patient's access log, a page at a time, newest first, with the reason
// a clinician gave for emergency (break-glass) access.

import { h, label, say, time } from "./dom.js";

const WHO = {
  PATIENT: "You",
  CLINICIAN: "A clinician",
  PARTNER: "A partner you consented to",
  SUPPORT: "Support staff",
  AUDITOR: "An auditor",
};

const WHAT = {
  DISCLOSURE: "Read",
  MEDIA: "Played a recording",
  DENIAL: "Was refused",
  ALERT: "Was stopped by the safety check",
  CONSENT_GRANTED: "Consent granted",
  CONSENT_REVOKED: "Consent revoked",
  BREAK_GLASS_OPENED: "Emergency access opened",
};

export class AccessLogView {
  constructor(gateway, { pageSize, onError }) {
    this.gateway = gateway;
    this.pageSize = pageSize;
    this.rows = document.getElementById("access-log-rows");
    this.status = document.getElementById("access-log-status");
    this.more = document.getElementById("access-log-more");
    this.more.addEventListener("click", () => this.loadMore().catch(onError));
    this.reset();
  }

  reset() {
    this.rows.replaceChildren();
    this.after = null;
    this.more.hidden = true;
    say(this.status, "");
  }

  // Always from the newest: the log grows while the app is open.
  async open() {
    this.reset();
    await this.loadMore();
  }

  async loadMore() {
    this.more.disabled = true;
    say(this.status, "Loading…");
    try {
      const variables = { first: this.pageSize, after: this.after };
      const data = await this.gateway.run("MyAccessLog", variables);
      const page = data.accessLog;
      this.rows.append(...page.edges.map((edge) => edge.node).filter(Boolean).map(row));
      this.after = page.pageInfo.endCursor;
      this.more.hidden = !page.pageInfo.hasNextPage;
      const count = this.rows.children.length;
      const noun = count === 1 ? "access" : "accesses";
      const more = this.more.hidden ? "." : "; more are available.";
      say(
        this.status,
        count === 0 ? "Nobody has accessed your record yet." : `Showing ${count} ${noun}${more}`,
      );
    } finally {
      this.more.disabled = false;
    }
  }
}

function objects(event) {
  const byType = new Map();
  for (const object of event.objects || []) {
    const fields = byType.get(object.type) || new Set();
    for (const field of object.fields || []) {
      fields.add(field);
    }
    byType.set(object.type, fields);
  }
  return [...byType].map(([type, fields]) =>
    fields.size ? `${type} (${[...fields].join(", ")})` : type,
  );
}

function row(event) {
  const who = event.accessorName || WHO[event.accessorRole] || label(event.accessorRole);
  const things = objects(event);
  const kind = WHAT[event.kind] || label(event.kind);
  const what = things.length ? `${kind}: ${things.join("; ")}` : kind;
  const reason = event.breakGlassReason;
  return h(
    "tr",
    { class: reason ? "break-glass" : null },
    h("td", {}, time(event.occurredAt)),
    h("td", {}, who),
    h("td", {}, what),
    h("td", {}, reason ? h("strong", {}, reason) : ""),
  );
}
