// PostGraphile V5 over the gateway's tables, as the application role, with the same row-level
// security: the caller's role and patient id become the settings the RLS policies read. A pool
// the size of the gateway's (POOL_MAX), idle connections kept as long as the gateway's
// (POOL_IDLE_MS); production mode comes from NODE_ENV / GRAPHILE_ENV.
import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";

import jwt from "jsonwebtoken";
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

// The caller's bearer token verified as the gateway verifies it, against the same JWKS: ES256,
// issuer, audience, expiry, 30 s of leeway. The caller's role and patient still come from the
// X-Role / X-Actor headers: mapping a subject to an account is the gateway's table, not the
// peer's. Without JWKS_FILE nothing is verified (the report says which).
const keys = new Map(
  process.env.JWKS_FILE
    ? JSON.parse(readFileSync(process.env.JWKS_FILE, "utf8")).keys.map((jwk) => [
        jwk.kid,
        createPublicKey({ key: jwk, format: "jwk" }),
      ])
    : [],
);

function verified(req) {
  if (!process.env.JWKS_FILE) return;
  const token = String(req?.headers.authorization ?? "").replace(/^Bearer /, "");
  const kid = jwt.decode(token, { complete: true })?.header.kid;
  const key = keys.get(kid);
  if (!key) throw new Error("Token signed by an unknown key");
  jwt.verify(token, key, {
    algorithms: ["ES256"],
    issuer: process.env.JWT_ISSUER,
    audience: process.env.JWT_AUDIENCE,
    clockTolerance: 30,
  });
}

export default {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      // The gateway's pool (asyncpg) closes a connection idle for 300 s; node-postgres's default
      // is 10 s, which would start cells on fresh connections. Equal settings for both.
      poolConfig: {
        max: Number(process.env.POOL_MAX ?? 10),
        idleTimeoutMillis: Number(process.env.POOL_IDLE_MS ?? 300000),
      },
      schemas: ["data", "bench_peer"],
      pgSettings(requestContext) {
        const req = requestContext.node?.req;
        verified(req);
        const role = String(req?.headers["x-role"] ?? "");
        // PEER_ROLES: PostGraphile's documented pattern, a PostgreSQL role per kind of user
        // with its own policies (bench/postgraphile/requests.py, ROLES).
        const own = process.env.PEER_ROLES && role ? { role: `bench_peer_${role}` } : {};
        return {
          ...own,
          "gateway.role": role,
          "gateway.actor_id": String(req?.headers["x-actor"] ?? ""),
          "gateway.scopes": "",
        };
      },
    }),
  ],
  grafserv: { port: Number(process.env.PORT), host: "127.0.0.1", graphiql: false },
  grafast: { explain: false },
};
