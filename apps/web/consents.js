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
        revoked ? `Consent for ${name} revoked.` : `Consent for ${name} could not be revoked.`,
      );
      document.getElementById("consents-heading").focus();
    } finally {
      button.disabled = false;
    }
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
    if (consent.active) {
      const button = h(
        "button",
        { type: "button", class: "danger", "aria-label": `Revoke consent for ${name}` },
        "Revoke",
      );
      button.addEventListener("click", () => this.revoke(consent, button).catch(this.onError));
      children.push(button);
    }
    return h(
      "li",
      { class: consent.active ? "card" : "card inactive", "data-id": consent.id },
      ...children,
    );
  }
}

function partnerName(consent) {
  return consent.partner && consent.partner.name ? consent.partner.name : "a partner";
}
