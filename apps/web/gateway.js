// The gateway, as this app uses it: trusted documents sent by hash (the production gateway
// refuses any other document), the session's access token, and the start of a recording's
// playback.

import { SignInRequired } from "./session.js";

export { SignInRequired };

export class GatewayError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "GatewayError";
    this.code = code;
  }
}

// The gateway's base URL: <meta name="gateway-url">, or this page's origin when it is empty.
export function gatewayUrl(document) {
  const meta = document.querySelector('meta[name="gateway-url"]');
  const configured = meta ? meta.content.trim() : "";
  return new URL(configured || document.location.origin);
}

// Operation name -> sha256 of its document, from the trusted documents manifest
// (`gateway manifest build apps/operations`) served next to this page.
export async function loadManifest(url) {
  const response = await fetch(url, { credentials: "omit", cache: "no-store" });
  if (!response.ok) {
    throw new GatewayError(
      `The operations manifest could not be loaded (HTTP ${response.status}).`,
    );
  }
  const manifest = await response.json();
  if (manifest.format !== "apollo-persisted-query-manifest" || manifest.version !== 1) {
    throw new GatewayError("The operations manifest has an unknown format.");
  }
  return new Map(manifest.operations.map((operation) => [operation.name, operation.id]));
}

export class Gateway {
  constructor(base, hashes, session) {
    this.base = base;
    this.endpoint = new URL("/graphql", base).href;
    this.hashes = hashes;
    this.session = session;
  }

  async authorization() {
    return "Bearer " + (await this.session.accessToken());
  }

  // The data of a trusted operation; errors of single fields (e.g. FORBIDDEN) leave nulls.
  async run(operationName, variables = {}) {
    const sha256Hash = this.hashes.get(operationName);
    if (!sha256Hash) {
      throw new GatewayError(`${operationName} is not in the operations manifest.`);
    }
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers: {
        authorization: await this.authorization(),
        "content-type": "application/json",
        accept: "application/graphql-response+json, application/json",
      },
      body: JSON.stringify({
        operationName,
        variables,
        extensions: { persistedQuery: { version: 1, sha256Hash } },
      }),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    if (response.status === 401) {
      this.session.end();
      throw new SignInRequired();
    }
    let body;
    try {
      body = await response.json();
    } catch (error) {
      throw new GatewayError(`The gateway answered HTTP ${response.status}.`);
    }
    if (!body.data) {
      const first = (body.errors || [])[0] || {};
      const code = first.extensions ? first.extensions.code : undefined;
      throw new GatewayError(first.message || `HTTP ${response.status}`, code);
    }
    return body.data;
  }

  // A playback URL (absolute, or relative to the gateway) as the <video> element loads it.
  mediaUrl(playbackUrl) {
    return new URL(playbackUrl, this.base).href;
  }

  // Starts one audited playback: the gateway answers 204 and sets a cookie, scoped to this
  // recording's path, that the <video> element's requests then carry; 403 for any refusal.
  async startPlayback(url) {
    const response = await fetch(url, {
      method: "POST",
      headers: { authorization: await this.authorization() },
      credentials: "include",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    if (response.status === 401) {
      this.session.end();
      throw new SignInRequired();
    }
    return response.status;
  }
}
