// The patient web app: sign in with a token, then My replays, Who saw my record and Consents.
// Views are chosen by the address's fragment (#replays, #replay=<id>, #access-log, #consents);
// /app/consent?... is the consent page a partner sends the patient to (consent.js).

import { AccessLogView } from "./access-log.js";
import { ConsentView, isConsentPage } from "./consent.js";
import { ConsentsView } from "./consents.js";
import { Gateway, GatewayError, SignInRequired, gatewayUrl, loadManifest } from "./gateway.js";
import { ReplayView } from "./replay.js";
import { ReplaysView } from "./replays.js";
import { Session } from "./session.js";

const VIEWS = ["replays", "replay", "access-log", "consents", "consent"];
const TITLES = {
  replays: "My replays",
  replay: "Replay",
  "access-log": "Who saw my record",
  consents: "Consents",
  consent: "Consent",
};
const CONSENT_PAGE = isConsentPage(window.location);

const element = (id) => document.getElementById(id);
const notice = element("notice");
const signInForm = element("sign-in");
const signedIn = element("signed-in");
const sections = element("sections");

const session = new Session(window.sessionStorage);
// A link with #token= signs in, except on the consent page: there a link made by someone else
// (forwarded by a partner) would sign the patient in as that someone, and the consent would be
// theirs. The patient signs in on the page itself; such a token is dropped from the address.
if (CONSENT_PAGE) {
  session.dropFromFragment(window.location, window.history);
} else {
  session.takeFromFragment(window.location, window.history);
}

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
    signOut("Your sign-in has expired or is not valid. Please sign in again.");
  } else if (error instanceof GatewayError) {
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

function showSignIn() {
  hideViews();
  signedIn.hidden = true;
  signInForm.hidden = false;
  document.title = "Sign in - My consultations";
  element("token").focus();
}

function signOut(message) {
  session.signOut();
  if (app) {
    app.reset();
  }
  show(message);
  showSignIn();
}

class App {
  constructor(gateway) {
    const size = pageSize();
    this.gateway = gateway;
    this.replays = new ReplaysView(gateway, { pageSize: size, onError: fail });
    this.replay = new ReplayView(gateway, { onSignInRequired: () => fail(new SignInRequired()) });
    this.accessLog = new AccessLogView(gateway, { pageSize: size, onError: fail });
    this.consents = new ConsentsView(gateway, { onError: fail });
    this.consent = new ConsentView(gateway, {
      onError: fail,
      navigate: (url) => window.location.assign(url),
    });
    this.me = null;
  }

  // Forget everything of the person signed in (a sign-out, or another token).
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
    signInForm.hidden = true;
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
  show("");
  if (!session.token()) {
    showSignIn();
    return;
  }
  try {
    await app.route(moveFocus);
  } catch (error) {
    fail(error);
  }
}

signInForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const input = element("token");
  if (app && session.signIn(input.value)) {
    input.value = "";
    app.reset();
    start(false);
  }
});
element("sign-out").addEventListener("click", () => signOut("You are signed out."));
window.addEventListener("hashchange", () => {
  if (CONSENT_PAGE) {
    // The request on screen stays the one answered: a new fragment opens nothing new.
    session.dropFromFragment(window.location, window.history);
    return;
  }
  if (app && session.takeFromFragment(window.location, window.history)) {
    app.reset();
  }
  start(true);
});

try {
  app = new App(new Gateway(gatewayUrl(document), await loadManifest("manifest.json"), session));
  start(false);
} catch (error) {
  show(error instanceof GatewayError ? error.message : "The app could not start.");
}
