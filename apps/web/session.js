// The signed-in session: tokens from the OpenID Connect provider (oidc.js), in this tab's
// sessionStorage only, the access token sent only as the Authorization header of this app's
// requests to the gateway. Renewed with the refresh token shortly before it expires; without
// one, the app says when the sign-in ends and asks to sign in again.

import { SignInError } from "./oidc.js";

const KEY = "gateway.webapp.session";
const SIGNED_OUT = "gateway.webapp.signed-out";
// Renew this long before the access token expires; an access token is never sent after it.
const RENEW_EARLY_MS = 60_000;
export const ENDED = "Your sign-in has ended. Please sign in again.";

export class SignInRequired extends Error {
  constructor(message = "Your sign-in has expired or is not valid. Please sign in again.") {
    super(message);
    this.name = "SignInRequired";
  }
}

export class Session {
  constructor(storage, oidc) {
    this.storage = storage;
    this.oidc = oidc;
    this.renewing = null;
  }

  current() {
    try {
      return JSON.parse(this.storage.getItem(KEY) || "null");
    } catch (error) {
      return null;
    }
  }

  // Signed in while the access token lasts, or while a refresh token may renew it.
  signedIn() {
    const session = this.current();
    return Boolean(session && (session.expiresAt > Date.now() || session.refreshToken));
  }

  // The person's name from the ID token, for "Signed in as".
  name() {
    const session = this.current();
    return session ? session.name : "";
  }

  save({ tokens, claims }) {
    const before = this.current();
    const session = {
      accessToken: tokens.access_token,
      expiresAt: Date.now() + 1000 * Number(tokens.expires_in || 300),
      refreshToken: tokens.refresh_token || null,
      idToken: tokens.id_token || (before && before.idToken) || null,
      subject: claims ? claims.sub : before && before.subject,
      name: (claims && (claims.name || claims.preferred_username)) || (before && before.name) || "",
    };
    if (before && session.subject !== before.subject) {
      throw new SignInRequired("The provider answered for another account. Please sign in again.");
    }
    this.storage.setItem(KEY, JSON.stringify(session));
    return session;
  }

  // An access token good for at least a while longer: renewed first when it is about to expire.
  async accessToken() {
    const session = this.current();
    if (!session) {
      throw new SignInRequired();
    }
    if (Date.now() < session.expiresAt - RENEW_EARLY_MS) {
      return session.accessToken;
    }
    if (session.refreshToken) {
      try {
        return (await this.renew()).accessToken;
      } catch (error) {
        // Renewal refused (the provider's session ended): use what is left, then sign in.
      }
    }
    if (Date.now() < session.expiresAt) {
      return session.accessToken;
    }
    this.end();
    throw new SignInRequired(ENDED);
  }

  // One renewal at a time, whoever asks.
  renew() {
    if (!this.renewing) {
      const session = this.current();
      this.renewing = (async () => {
        if (!session || !session.refreshToken) {
          throw new SignInRequired();
        }
        try {
          return this.save(await this.oidc.refresh(session.refreshToken));
        } catch (error) {
          // Refused (the provider's session ended, the token was used): it will not work later
          // either; the sign-in lasts until its access token expires. Out of reach (offline, a
          // 5xx): kept, for the next try.
          const now = this.current();
          const refused = error instanceof SignInRequired || (error && error.refused);
          if (refused && now && now.refreshToken === session.refreshToken) {
            this.storage.setItem(KEY, JSON.stringify({ ...now, refreshToken: null }));
          }
          throw error;
        }
      })().finally(() => {
        this.renewing = null;
      });
    }
    return this.renewing;
  }

  // Milliseconds until the sign-in ends without a renewal (0: ended or none).
  remaining() {
    const session = this.current();
    return session ? Math.max(0, session.expiresAt - Date.now()) : 0;
  }

  canRenew() {
    const session = this.current();
    return Boolean(session && session.refreshToken);
  }

  async signIn(returnTo, prompt) {
    this.end();
    await this.oidc.authorize(returnTo, prompt);
  }

  // The provider's answer, when the address holds one: true once signed in.
  async complete(location, history) {
    const answer = await this.oidc.complete(location, history);
    if (!answer) {
      return false;
    }
    this.end();
    this.save(answer);
    return true;
  }

  // Forgets the tokens here; the address that ends the provider's session too (or null).
  async signOut() {
    this.end();
    const url = await this.oidc.endSessionUrl();
    if (url) {
      this.storage.setItem(SIGNED_OUT, "1");
    }
    return url;
  }

  // True once after coming back from the provider's sign-out.
  justSignedOut() {
    const flag = this.storage.getItem(SIGNED_OUT);
    this.storage.removeItem(SIGNED_OUT);
    return Boolean(flag);
  }

  end() {
    this.storage.removeItem(KEY);
  }
}

export { SignInError };
