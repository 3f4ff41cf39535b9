// The patient web app: sign in through the operator's OpenID Connect provider, then My replays,
// Who saw my record and Consents. Views are chosen by the address's fragment (#replays,
// #replay=<id>, #access-log, #consents); /app/consent?... is the consent page a partner sends
// the patient to (consent.js).

import { AccessLogView } from "./access-log.js";
import { ConsentView, isConsentPage } from "./consent.js";
import { ConsentsView } from "./consents.js";
import { Gateway, GatewayError, SignInRequired, gatewayUrl, loadManifest } from "./gateway.js";
import { OidcClient, SignInError, oidcConfig } from "./oidc.js";
import { ReplayView } from "./replay.js";
import { ReplaysView } from "./replays.js";
import { ENDED, Session } from "./session.js";

const VIEWS = ["replays", "replay", "access-log", "consents", "consent"];
const TITLES = {
  replays: "My replays",
  replay: "Replay",
  "access-log": "Who saw my record",
  consents: "Consents",
  consent: "Consent",
};
// Shown from this long before a sign-in that cannot be renewed ends.
const WARN_BEFORE_MS = 120_000;

const element = (id) => document.getElementById(id);
const notice = element("notice");
const signInView = element("view-sign-in");
const signedIn = element("signed-in");
const sections = element("sections");
const expiry = element("expiry");

const config = oidcConfig(document);
const session = new Session(window.sessionStorage, new OidcClient(config, window.sessionStorage));
// Set once the provider's answer (if any) has been taken out of the address.
let CONSENT_PAGE = false;

function show(message) {
  notice.textContent = message || "";
  notice.hidden = !message;
}

function pageSize() {
  const meta = document.querySelector('meta[name="page-size"]');
  const size = Number(meta ? meta.content : "");
  return Number.isInteger(size) && size > 0 ? size : 10;
}

let app = null;

function fail(error) {
  if (error instanceof SignInRequired) {
    signOut(error.message);
  } else if (error instanceof GatewayError || error instanceof SignInError) {
    show(error.message);
  } else {
    show("Something went wrong. Please try again.");
    console.error(error);
  }
}

function hideViews() {
  for (const name of VIEWS) {
    element(`view-${name}`).hidden = true;
  }
  sections.hidden = true;
}

// Focus moves to the heading when something sent the patient here (a sign-out, an ended
// sign-in); on arrival it stays at the page's start, where the skip link is the first stop.
function showSignIn(moveFocus) {
  hideViews();
  signedIn.hidden = true;
  expiry.hidden = true;
  signInView.hidden = false;
  document.title = "Sign in - My consultations";
  if (moveFocus) {
    element("sign-in-heading").focus();
  }
}

// Signed out here (the sign-in ended, or the gateway refused it): the provider's session, if
// any, stays, so that signing in again is one step.
function signOut(message) {
  session.end();
  if (app) {
    app.reset();
  }
  show(message);
  showSignIn(true);
}

function here() {
  return window.location.pathname + window.location.search + window.location.hash;
}

async function signIn(prompt) {
  try {
    await session.signIn(here(), prompt);
  } catch (error) {
    fail(error);
  }
}

// Renews the sign-in shortly before it ends; without a way to renew it, says when it ends and
// offers to sign in again, and signs out when it has. Runs every few seconds.
function watchExpiry() {
  if (!session.current()) {
    expiry.hidden = true;
    return;
  }
  const left = session.remaining();
  const renewable = session.canRenew();
  if (renewable && left < 2 * WARN_BEFORE_MS) {
    // A refusal drops the refresh token (the next check then warns); out of reach, the next
    // check tries again.
    session.renew().catch(() => {});
  }
  if (renewable) {
    if (left > 0) {
      expiry.hidden = true;
    } else {
      warn("Your sign-in could not be renewed.");
    }
    return;
  }
  if (left <= 0) {
    signOut(ENDED);
    return;
  }
  if (left < WARN_BEFORE_MS) {
    const at = new Intl.DateTimeFormat(undefined, { timeStyle: "short" }).format(
      new Date(Date.now() + left),
    );
    warn(`Your sign-in ends at ${at}.`);
  }
}

function warn(text) {
  element("expiry-text").textContent = text;
  expiry.hidden = false;
}

class App {
  constructor(gateway) {
    const size = pageSize();
    this.gateway = gateway;
    this.replays = new ReplaysView(gateway, { pageSize: size, onError: fail });
    this.replay = new ReplayView(gateway, { onSignInRequired: (error) => fail(error) });
    this.accessLog = new AccessLogView(gateway, { pageSize: size, onError: fail });
    this.consents = new ConsentsView(gateway, { onError: fail });
    this.consent = new ConsentView(gateway, {
      onError: fail,
      navigate: (url) => window.location.assign(url),
    });
    this.me = null;
  }

  // Forget everything of the person signed in (a sign-out, or another sign-in).
  reset() {
    this.replay.close();
    this.replays.reset();
    this.accessLog.reset();
    this.me = null;
  }

  async whoAmI() {
    if (!this.me) {
      this.me = (await this.gateway.run("Me")).me;
    }
    return this.me;
  }

  async route(moveFocus) {
    const me = await this.whoAmI();
    signInView.hidden = true;
    signedIn.hidden = false;
    element("who").textContent = me.patient
      ? `Signed in as ${me.patient.displayName}`
      : "Signed in";
    if (!me.patient) {
      hideViews();
      show("This app is for patients: the account signed in is not a patient's.");
      return;
    }
    if (CONSENT_PAGE) {
      // The partner's request alone: no sections to wander off to before answering.
      for (const view of VIEWS) {
        element(`view-${view}`).hidden = view !== "consent";
      }
      document.title = `${TITLES.consent} - My consultations`;
      if (moveFocus) {
        element("consent-heading").focus();
      }
      await this.consent.open(window.location, me.patient.displayName);
      return;
    }
    sections.hidden = false;
    const hash = window.location.hash;
    const replayId = hash.startsWith("#replay=") ? decodeURIComponent(hash.slice(8)) : null;
    const name = replayId ? "replay" : VIEWS.includes(hash.slice(1)) ? hash.slice(1) : "replays";
    for (const view of VIEWS) {
      element(`view-${view}`).hidden = view !== name;
    }
    for (const link of sections.querySelectorAll("a")) {
      const view = name === "replay" ? "replays" : name;
      if (link.dataset.view === view) {
        link.setAttribute("aria-current", "page");
      } else {
        link.removeAttribute("aria-current");
      }
    }
    document.title = `${TITLES[name]} - My consultations`;
    if (name !== "replay") {
      this.replay.close();
    }
    if (moveFocus) {
      element(`view-${name}`).querySelector("h1").focus();
    }
    if (name === "replay") {
      await this.replay.open(replayId);
    } else if (name === "replays") {
      await this.replays.open();
    } else if (name === "access-log") {
      await this.accessLog.open();
    } else {
      await this.consents.open();
    }
  }
}

async function start(moveFocus) {
  if (!session.signedIn()) {
    session.end();
    showSignIn(moveFocus);
    return;
  }
  show("");
  try {
    await app.route(moveFocus);
  } catch (error) {
    fail(error);
  }
}

element("sign-in").addEventListener("click", () => signIn());
element("sign-in-again").addEventListener("click", () => signIn());
element("sign-out").addEventListener("click", async () => {
  if (app) {
    app.reset();
  }
  const url = await session.signOut();
  if (url) {
    window.location.assign(url);
  } else {
    show("You are signed out here. Your sign-in service may keep you signed in.");
    showSignIn(true);
  }
});
element("skip-link").addEventListener("click", (event) => {
  // The address's fragment chooses the view: the skip link moves focus without changing it.
  event.preventDefault();
  const heading = [...document.querySelectorAll("main h1")].find((h1) => !h1.closest("[hidden]"));
  (heading || element("main")).focus();
});
window.addEventListener("hashchange", () => {
  if (!CONSENT_PAGE) {
    start(true);
  }
});

try {
  if (!config) {
    throw new GatewayError(
      "Sign-in is not set up for this app: its page needs oidc-issuer and oidc-client-id.",
    );
  }
  let justSignedIn = false;
  let refused = false;
  try {
    justSignedIn = await session.complete(window.location, window.history);
  } catch (error) {
    show(error.message);
    refused = true;
  }
  CONSENT_PAGE = isConsentPage(window.location);
  if (session.justSignedOut()) {
    show("You are signed out.");
  }
  app = new App(new Gateway(gatewayUrl(document), await loadManifest("manifest.json"), session));
  // After the provider's answer, focus goes to the view (or, refused, to the sign-in).
  await start(justSignedIn || refused);
  window.setInterval(watchExpiry, 5_000);
} catch (error) {
  show(error instanceof GatewayError ? error.message : "The app could not start.");
}
