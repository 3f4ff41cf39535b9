// Who saw my record: the patient's access log in plain words. Emergency (break-glass) accesses
// first, with the reason the clinician gave; then others' accesses, newest first, a page at a
// time; the patient's own reads only when they ask for them (one switch); last, one line for each
// month moved to the audit archive, whose accesses the list no longer holds.

import { h, say, time } from "./dom.js";

const EMERGENCY_SHOWN = 20;
const SHOWN_PER_EVENT = 3;

const WHO = {
  PATIENT: () => "You",
  CLINICIAN: (name) => (name ? `${name}, clinician` : "A clinician"),
  PARTNER: (name) => (name ? `${name}, an app you allowed` : "An app you allowed"),
  SUPPORT: () => "Support staff",
  AUDITOR: () => "An auditor",
};

export function who(event) {
  const words = WHO[event.accessorRole];
  return words ? words(event.accessorName) : "Someone";
}

const DATE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
// A period starts on the first instant of a month in UTC: named in UTC, whatever the time zone.
const MONTH = new Intl.DateTimeFormat(undefined, {
  month: "long",
  year: "numeric",
  timeZone: "UTC",
});

// your consultation “Back pain” on 3 Mar 2026 (or less, when less is known).
export function consultationWords(consultation) {
  if (!consultation) {
    return "a consultation of yours";
  }
  const reason = consultation.reason ? ` “${consultation.reason}”` : "";
  const date = consultation.scheduledAt ? DATE.format(new Date(consultation.scheduledAt)) : "";
  return `your consultation${reason}${date ? ` on ${date}` : ""}`;
}

// What was read of one consultation, most sensitive first.
function readOfConsultation(fields, recordings) {
  if (fields.has("clinicianNotes")) {
    return "Read the clinician's notes on";
  }
  if (fields.has("summary")) {
    return "Read the summary of";
  }
  if (fields.has("reason")) {
    return "Saw the reason for";
  }
  if (fields.size) {
    return "Saw the appointment of";
  }
  return recordings.has("playbackUrl") ? "Got a link to play a recording of" : "Saw the recordings of";
}

function profileWords(fields) {
  const parts = [];
  if (fields.has("displayName")) {
    parts.push("name");
  }
  if (fields.has("birthDate")) {
    parts.push("date of birth");
  }
  return parts.length ? `Read your profile (${parts.join(", ")})` : "Saw your profile";
}

// The event's objects, by consultation: one plain sentence each, at most a few, then a count.
export function what(event) {
  if (event.kind === "MEDIA") {
    const consultation = (event.objects || []).map((o) => o.consultation).find(Boolean);
    return [`Played a recording of ${consultationWords(consultation)}`];
  }
  if (event.kind === "BREAK_GLASS_OPENED") {
    return ["Opened emergency access to your record"];
  }
  if (event.kind === "CONSENT_GRANTED") {
    return ["Consent given to an app"];
  }
  if (event.kind === "CONSENT_REVOKED") {
    return ["Consent revoked"];
  }
  const byConsultation = new Map();
  const lines = [];
  for (const object of event.objects || []) {
    if (object.type === "Patient") {
      lines.push(profileWords(new Set(object.fields || [])));
      continue;
    }
    if (object.type !== "Consultation" && object.type !== "Recording") {
      continue;
    }
    const key = object.consultation ? object.consultation.id : `unknown:${object.id}`;
    const entry = byConsultation.get(key) || {
      consultation: object.consultation,
      fields: new Set(),
      recordings: new Set(),
    };
    for (const field of object.fields || []) {
      (object.type === "Consultation" ? entry.fields : entry.recordings).add(field);
    }
    byConsultation.set(key, entry);
  }
  const consultations = [...byConsultation.values()];
  for (const entry of consultations.slice(0, SHOWN_PER_EVENT)) {
    lines.push(
      `${readOfConsultation(entry.fields, entry.recordings)} ${consultationWords(entry.consultation)}`,
    );
  }
  const more = consultations.length - SHOWN_PER_EVENT;
  if (more > 0) {
    lines.push(`and ${more} more ${more === 1 ? "consultation" : "consultations"}`);
  }
  return lines.length ? lines : ["Read your record"];
}

// Accesses from September 2026 are archived: ... (or were deleted, after the retention period).
export function archivedWords(period) {
  const month = MONTH.format(new Date(period.from));
  if (period.deletedAt) {
    const deleted = DATE.format(new Date(period.deletedAt));
    return `Accesses from ${month} were deleted on ${deleted}, after the retention period.`;
  }
  return (
    `Accesses from ${month} are archived: the records of this month are kept in the audit ` +
    "archive; ask the privacy office to see them."
  );
}

function card(event) {
  const reason = event.breakGlassReason;
  return h(
    "li",
    { class: reason ? "card break-glass" : "card", tabindex: "-1" },
    h("p", { class: "meta" }, time(event.occurredAt)),
    h("p", { class: "who" }, who(event)),
    h("ul", { class: "what" }, ...what(event).map((line) => h("li", {}, line))),
    reason ? h("p", { class: "reason" }, h("strong", {}, "Emergency access: "), reason) : null,
  );
}

export class AccessLogView {
  constructor(gateway, { pageSize, onError }) {
    this.gateway = gateway;
    this.pageSize = pageSize;
    this.list = document.getElementById("access-log-list");
    this.emergencyBox = document.getElementById("emergency");
    this.emergencyList = document.getElementById("emergency-list");
    this.status = document.getElementById("access-log-status");
    this.more = document.getElementById("access-log-more");
    this.own = document.getElementById("access-log-own");
    this.archivedBox = document.getElementById("archived");
    this.archivedList = document.getElementById("archived-list");
    this.more.addEventListener("click", () => this.loadMore(true).catch(onError));
    this.own.addEventListener("change", () => this.reload().catch(onError));
    this.reset();
  }

  reset() {
    // Each open, and each change of the switch, drops the answers of loads started before.
    this.opened = (this.opened || 0) + 1;
    this.generation = (this.generation || 0) + 1;
    this.own.checked = false;
    this.list.replaceChildren();
    this.emergencyList.replaceChildren();
    this.emergencyBox.hidden = true;
    this.archivedList.replaceChildren();
    this.archivedBox.hidden = true;
    this.after = null;
    this.more.hidden = true;
    say(this.status, "");
  }

  // Always from the newest (the log grows while the app is open), the own reads folded.
  async open() {
    this.reset();
    const opened = this.opened;
    const generation = this.generation;
    const data = await this.gateway.run("MyAccessLog", {
      first: EMERGENCY_SHOWN,
      emergency: true,
      withArchivedPeriods: true,
    });
    if (opened !== this.opened) {
      return;
    }
    const emergencies = data.accessLog.edges.map((edge) => edge.node).filter(Boolean);
    this.emergencyList.replaceChildren(...emergencies.map(card));
    this.emergencyBox.hidden = emergencies.length === 0;
    const archived = data.accessLog.archivedPeriods || [];
    this.archivedList.replaceChildren(
      ...archived.map((period) => h("li", {}, archivedWords(period))),
    );
    this.archivedBox.hidden = archived.length === 0;
    if (generation === this.generation) {
      await this.loadMore(false); // else the switch changed meanwhile, and reloaded the list
    }
  }

  // The switch changed: the list again from the newest, in the other view. An answer to a
  // load started before (the other view, or another page) is dropped when it arrives.
  async reload() {
    this.generation += 1;
    this.list.replaceChildren();
    this.after = null;
    await this.loadMore(false);
  }

  async loadMore(focusNew) {
    const generation = this.generation;
    this.more.disabled = true;
    say(this.status, "Loading…");
    try {
      const variables = { first: this.pageSize, after: this.after, byOthers: !this.own.checked };
      const data = await this.gateway.run("MyAccessLog", variables);
      if (generation !== this.generation) {
        return;
      }
      const page = data.accessLog;
      const cards = page.edges.map((edge) => edge.node).filter(Boolean).map(card);
      this.list.append(...cards);
      this.after = page.pageInfo.endCursor;
      this.more.hidden = !page.pageInfo.hasNextPage;
      const count = this.list.children.length;
      const noun = count === 1 ? "access" : "accesses";
      const more = this.more.hidden ? "." : "; more are available.";
      const nobody = this.own.checked
        ? "Nobody has accessed your record yet."
        : "Nobody else has accessed your record yet.";
      say(this.status, count === 0 ? nobody : `Showing ${count} ${noun}${more}`);
      if (focusNew && cards.length) {
        cards[0].focus();
      }
    } finally {
      this.more.disabled = false;
    }
  }
}
