// Consents: the partners the patient lets read parts of their record, and revoking one.

import { h, say, time } from "./dom.js";
import { shortWords } from "./scopes.js";

export class ConsentsView {
  constructor(gateway, { onError }) {
    this.gateway = gateway;
    this.onError = onError;
    this.list = document.getElementById("consents-list");
    this.status = document.getElementById("consents-status");
  }

  async open() {
    say(this.status, "Loading…");
    await this.load();
  }

  async load(message) {
    const data = await this.gateway.run("MyConsents");
    const items = data.consents.filter(Boolean).map((consent) => this.item(consent));
    this.list.replaceChildren(...items);
    const active = data.consents.filter((consent) => consent && consent.active).length;
    const summary =
      data.consents.length === 0
        ? "You have not consented to any partner."
        : `${active} active ${active === 1 ? "consent" : "consents"}.`;
    say(this.status, message ? `${message} ${summary}` : summary);
  }

  async revoke(consent, button) {
    button.disabled = true;
    const name = partnerName(consent);
    try {
      const data = await this.gateway.run("RevokeConsent", { id: consent.id });
      const revoked = data.revokeConsent && data.revokeConsent.active === false;
      await this.load(
        revoked
          ? `Consent for ${name} revoked. To share with ${name} again, accept a new request from them.`
          : `Consent for ${name} could not be revoked.`,
      );
      document.getElementById("consents-heading").focus();
    } finally {
      button.disabled = false;
    }
  }

  // Revoking cannot be undone (the partner has to ask again): the card asks first, and
  // "Keep" puts everything back as it was.
  confirm(consent, card, button) {
    const name = partnerName(consent);
    const question = h(
      "div",
      { class: "confirm", role: "group", "aria-label": `Revoke consent for ${name}?` },
      h("p", {}, `Revoke consent for ${name}? They lose access on their next request, and `
        + "cannot read your record again unless you accept a new request."),
    );
    const yes = h("button", { type: "button", class: "danger" }, "Yes, revoke");
    const keep = h("button", { type: "button" }, "Keep consent");
    question.append(h("div", { class: "actions" }, yes, keep));
    yes.addEventListener("click", () => this.revoke(consent, yes).catch(this.onError));
    keep.addEventListener("click", () => {
      question.remove();
      button.hidden = false;
      button.focus();
    });
    button.hidden = true;
    card.append(question);
    yes.focus();
  }

  item(consent) {
    const name = partnerName(consent);
    const reads = (consent.scopes || []).map(shortWords).join(", ");
    const state = consent.active
      ? ["Active until ", time(consent.expiresAt, false)]
      : consent.revokedAt
        ? ["Revoked on ", time(consent.revokedAt, false)]
        : ["Expired on ", time(consent.expiresAt, false)];
    const children = [
      h("h2", {}, name),
      h("p", {}, `May read: ${reads || "nothing"}`),
      h("p", { class: "meta" }, "Granted ", time(consent.grantedAt, false), " · ", ...state),
    ];
    const card = h(
      "li",
      { class: consent.active ? "card" : "card inactive", "data-id": consent.id },
      ...children,
    );
    if (consent.active) {
      const button = h(
        "button",
        { type: "button", class: "danger", "aria-label": `Revoke consent for ${name}` },
        "Revoke",
      );
      button.addEventListener("click", () => this.confirm(consent, card, button));
      card.append(button);
    }
    return card;
  }
}

function partnerName(consent) {
  return consent.partner && consent.partner.name ? consent.partner.name : "a partner";
}
