// The consent page (/app/consent?partner=...&scope=...&redirect_uri=...&state=...): a partner
// sent the patient here to ask for consent. The gateway checks the partner, its redirect URI and
// the scopes against the partner's registration and keeps the request; the page shows who asks
// for what and until when; the patient approves (exactly those scopes) or declines, once; the
// gateway answers with the partner's address carrying the outcome and the partner's state.
// A link the gateway refuses is explained here and sends the patient nowhere.

import { GatewayError } from "./gateway.js";
import { h, say, time } from "./dom.js";
import { longWords } from "./scopes.js";

export function isConsentPage(location) {
  return /\/consent$/.test(location.pathname);
}

// What the partner's link asks for; null when something required is missing.
export function consentLink(location) {
  const query = new URLSearchParams(location.search);
  const partner = query.get("partner") || "";
  const redirectUri = query.get("redirect_uri") || "";
  const scopes = query
    .getAll("scope")
    .flatMap((value) => value.split(" "))
    .filter(Boolean);
  if (!partner || !redirectUri || scopes.length === 0) {
    return null;
  }
  const state = query.get("state") || "";
  if (!state) {
    return null;
  }
  return { partner, redirectUri, scopes, state };
}

export class ConsentView {
  constructor(gateway, { onError, navigate }) {
    this.gateway = gateway;
    this.onError = onError;
    this.navigate = navigate;
    this.element = (id) => document.getElementById(id);
    this.request = null;
    this.element("consent-approve").addEventListener("click", () => this.answer(true));
    this.element("consent-decline").addEventListener("click", () => this.answer(false));
  }

  refuse(message) {
    this.element("consent-request").hidden = true;
    say(this.element("consent-status"), message);
  }

  async open(location, patientName) {
    this.request = null;
    this.patientName = patientName;
    this.element("consent-request").hidden = true;
    const link = consentLink(location);
    if (!link) {
      this.refuse(
        "This consent link is incomplete: it must name a partner, the scopes it asks for, " +
          "where to send you back and a state. Nothing was shared.",
      );
      return;
    }
    say(this.element("consent-status"), "Loading…");
    let data;
    try {
      data = await this.gateway.run("RequestConsent", {
        partner: link.partner,
        scopes: link.scopes,
        redirectUri: link.redirectUri,
        state: link.state,
      });
    } catch (error) {
      if (error instanceof GatewayError && error.code === "BAD_USER_INPUT") {
        this.refuse(`This consent link cannot be used: ${error.message}. Nothing was shared.`);
        return;
      }
      throw error;
    }
    this.show(data.requestConsent);
  }

  show(request) {
    this.request = request;
    const name = request.partner && request.partner.name ? request.partner.name : "A partner";
    // Whose record: the patient signed in, named, so that nobody approves for another account.
    this.element("consent-who").textContent =
      `${name} asks to read, from the record of ${this.patientName}:`;
    this.element("consent-scopes").replaceChildren(
      ...request.scopes.map((scope) => h("li", {}, longWords(scope))),
    );
    this.element("consent-until").replaceChildren(
      "If you approve, until ",
      time(request.consentExpiresAt, false),
      ". You can revoke it at any time on the Consents page.",
    );
    this.element("consent-answer-by").replaceChildren(
      "Answer before ",
      time(request.validUntil),
      ".",
    );
    for (const id of ["consent-approve", "consent-decline"]) {
      this.element(id).disabled = false;
    }
    this.element("consent-request").hidden = false;
    say(this.element("consent-status"), "");
  }

  async answer(approve) {
    if (!this.request) {
      return;
    }
    for (const id of ["consent-approve", "consent-decline"]) {
      this.element(id).disabled = true;
    }
    try {
      const data = await this.gateway.run("AnswerConsentRequest", {
        id: this.request.id,
        approve,
      });
      const answered = data.answerConsentRequest;
      this.request = null;
      this.element("consent-request").hidden = true;
      say(
        this.element("consent-status"),
        answered.approved
          ? "Consent given. Sending you back to the partner…"
          : "You declined; nothing was shared. Sending you back to the partner…",
      );
      this.navigate(answered.redirectTo);
    } catch (error) {
      if (error instanceof GatewayError && error.code === "BAD_USER_INPUT") {
        // An earlier answer may have been given (its response lost): what is in force is on the
        // Consents page, not guessed here.
        this.refuse(`${error.message}. Your Consents page shows what is in force.`);
        return;
      }
      // A moment of load or a lost connection: the request is still open, answer again.
      for (const id of ["consent-approve", "consent-decline"]) {
        this.element(id).disabled = false;
      }
      this.onError(error);
    }
  }
}
