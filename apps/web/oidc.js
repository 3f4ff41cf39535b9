// Sign-in through the operator's OpenID Connect provider: the authorization code flow with PKCE
// (S256), for a public client (no secret). The provider is the page's <meta name="oidc-issuer">
// with <meta name="oidc-client-id">; its discovery document gives the endpoints.
//
// What is kept where: the PKCE verifier, state and nonce of a sign-in under way, and the tokens
// once signed in, in this tab's sessionStorage only (never localStorage, never a cookie, never the
// address: the code the provider sends back is taken out of the address at once, and used once).

export class SignInError extends Error {
  // `refused`: the provider answered that the grant is no good (invalid_grant and the like),
  // rather than being out of reach; a refresh token refused so will not work later either.
  constructor(message, refused = false) {
    super(message);
    this.name = "SignInError";
    this.refused = refused;
  }
}

const PENDING = "gateway.webapp.sign-in";
const CLOCK_SKEW_S = 300;

export function oidcConfig(document) {
  const meta = (name) => {
    const element = document.querySelector(`meta[name="${name}"]`);
    return element ? element.content.trim() : "";
  };
  const issuer = meta("oidc-issuer");
  const clientId = meta("oidc-client-id");
  if (!issuer || !clientId) {
    return null;
  }
  return {
    issuer: issuer.replace(/\/+$/, ""),
    clientId,
    scope: meta("oidc-scope") || "openid profile",
    audience: meta("oidc-audience"),
    // Where the provider sends the browser back: the app's own folder (registered with the
    // provider as is), unless the page names another.
    redirectUri: meta("oidc-redirect-uri") || new URL("./", import.meta.url).href,
  };
}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) {
    text += String.fromCharCode(byte);
  }
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function s256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return base64url(new Uint8Array(digest));
}

function claimsOf(jwt) {
  const part = (jwt || "").split(".")[1];
  if (!part) {
    throw new SignInError("The provider sent no ID token.");
  }
  const padded = part.replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

export class OidcClient {
  constructor(config, storage) {
    this.config = config;
    this.storage = storage;
    this.metadata = null;
  }

  async discover() {
    if (!this.metadata) {
      const url = `${this.config.issuer}/.well-known/openid-configuration`;
      let response;
      try {
        response = await fetch(url, { credentials: "omit", cache: "no-store" });
      } catch (error) {
        throw new SignInError("The sign-in service cannot be reached. Please try again.");
      }
      if (!response.ok) {
        throw new SignInError(`The sign-in service answered HTTP ${response.status}.`);
      }
      const metadata = await response.json();
      if (metadata.issuer !== this.config.issuer) {
        throw new SignInError("The sign-in service is not the one this app is set up for.");
      }
      this.metadata = metadata;
    }
    return this.metadata;
  }

  // Leaves the page for the provider's sign-in; `returnTo` is this app's address to come back to.
  async authorize(returnTo, prompt) {
    const metadata = await this.discover();
    const verifier = random(48);
    const state = random();
    const nonce = random();
    this.storage.setItem(PENDING, JSON.stringify({ verifier, state, nonce, returnTo }));
    const url = new URL(metadata.authorization_endpoint);
    const params = {
      response_type: "code",
      client_id: this.config.clientId,
      redirect_uri: this.config.redirectUri,
      scope: this.config.scope,
      state,
      nonce,
      code_challenge: await s256(verifier),
      code_challenge_method: "S256",
    };
    if (this.config.audience) {
      params.audience = this.config.audience;
    }
    if (prompt) {
      params.prompt = prompt;
    }
    for (const [name, value] of Object.entries(params)) {
      url.searchParams.set(name, value);
    }
    window.location.assign(url.href);
  }

  // The provider's answer in the address (?code=&state= or ?error=): null when there is none;
  // else the tokens and where to go back to. The answer leaves the address before anything else.
  async complete(location, history) {
    const params = new URLSearchParams(location.search);
    if (!params.has("state") || !(params.has("code") || params.has("error"))) {
      return null;
    }
    const back = location.pathname;
    history.replaceState(null, "", back);
    const pending = JSON.parse(this.storage.getItem(PENDING) || "null");
    this.storage.removeItem(PENDING);
    if (!pending || pending.state !== params.get("state")) {
      throw new SignInError("This sign-in was not started here, or it was already used. Please sign in again.");
    }
    const returnTo = safeReturn(pending.returnTo, back);
    history.replaceState(null, "", returnTo);
    if (params.has("error")) {
      const error = params.get("error");
      throw new SignInError(
        error === "access_denied" ? "Sign-in was cancelled." : `Sign-in failed (${error}).`,
      );
    }
    const metadata = await this.discover();
    if (params.has("iss") && params.get("iss") !== metadata.issuer) {
      throw new SignInError("The sign-in answer came from another service.");
    }
    const tokens = await this.grant({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: this.config.redirectUri,
      code_verifier: pending.verifier,
    });
    const claims = this.checkIdToken(tokens.id_token, pending.nonce);
    return { tokens, claims };
  }

  // A fresh access token from a refresh token (the provider may rotate the refresh token).
  async refresh(refreshToken) {
    const tokens = await this.grant({ grant_type: "refresh_token", refresh_token: refreshToken });
    return { tokens, claims: tokens.id_token ? this.checkIdToken(tokens.id_token, null) : null };
  }

  async grant(fields) {
    const metadata = await this.discover();
    const body = new URLSearchParams({ ...fields, client_id: this.config.clientId });
    let response;
    try {
      response = await fetch(metadata.token_endpoint, {
        method: "POST",
        body,
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch (error) {
      throw new SignInError("The sign-in service cannot be reached. Please try again.");
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok || !answer.access_token) {
      const refused = response.status === 400 || response.status === 401;
      throw new SignInError(
        `Sign-in failed (${answer.error || `HTTP ${response.status}`}).`,
        refused,
      );
    }
    return answer;
  }

  // The ID token came straight from the token endpoint over this connection (OpenID Connect
  // Core 3.1.3.7: TLS stands in for its signature); its claims are still checked.
  checkIdToken(idToken, nonce) {
    const claims = claimsOf(idToken);
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    const now = Date.now() / 1000;
    const problems = [
      claims.iss !== this.config.issuer,
      !audiences.includes(this.config.clientId),
      nonce !== null && claims.nonce !== nonce,
      typeof claims.sub !== "string" || !claims.sub,
      // Expired, or issued in the future: five minutes for this device's clock.
      !(Number(claims.exp) > now - CLOCK_SKEW_S),
      !(Number(claims.iat) < now + CLOCK_SKEW_S),
    ];
    if (problems.some(Boolean)) {
      throw new SignInError("The sign-in answer did not check out. Please sign in again.");
    }
    return claims;
  }

  // Where to send the browser to end the provider's session too (null: it offers none). By
  // client_id, never id_token_hint: an ID token names the patient, and an address is logged.
  async endSessionUrl() {
    const metadata = await this.discover().catch(() => null);
    if (!metadata || !metadata.end_session_endpoint) {
      return null;
    }
    const url = new URL(metadata.end_session_endpoint);
    url.searchParams.set("client_id", this.config.clientId);
    url.searchParams.set("post_logout_redirect_uri", this.config.redirectUri);
    return url.href;
  }
}

// Only a path of this app's own origin: never somewhere a crafted sign-in state could name.
function safeReturn(returnTo, fallback) {
  return typeof returnTo === "string" && /^\/(?![/\\])/.test(returnTo)
    ? returnTo
    : fallback;
}
