// PostGraphile V5 over the gateway's tables, as the application role, with the same row-level
// security: the caller's role and patient id become the settings the RLS policies read. A pool
// the size of the gateway's (POOL_MAX), idle connections kept as long as the gateway's
// (POOL_IDLE_MS); production mode comes from NODE_ENV / GRAPHILE_ENV.
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

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
