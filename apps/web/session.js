// The signed-in token: in this tab's sessionStorage only (never localStorage, never a cookie),
// sent only as the Authorization header of this app's requests to the gateway.

const KEY = "gateway.webapp.token";

export class Session {
  constructor(storage) {
    this.storage = storage;
  }

  token() {
    return this.storage.getItem(KEY) || "";
  }

  signIn(token) {
    const cleaned = token.trim().replace(/^bearer\s+/i, "");
    if (cleaned) {
      this.storage.setItem(KEY, cleaned);
    }
    return Boolean(cleaned);
  }

  signOut() {
    this.storage.removeItem(KEY);
  }

  // `gateway dev` prints a link ending in #token=...: sign in with it, then take it out of the
  // address bar and the history at once (a fragment never reaches a server or a Referer).
  takeFromFragment(location, history) {
    const match = /^#token=([^&]+)/.exec(location.hash);
    if (!match) {
      return false;
    }
    this.signIn(decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search + "#replays");
    return true;
  }

  // The fragment out of the address and the history, without signing in with anything in it.
  dropFromFragment(location, history) {
    if (location.hash) {
      history.replaceState(null, "", location.pathname + location.search);
    }
  }
}
