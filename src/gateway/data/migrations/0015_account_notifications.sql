-- Gateways remember the account behind a verified (issuer, subject) between requests
-- (gateway.authn.accounts, GATEWAY_ACCOUNT_CACHE_SIZE) and forget every one of them when this
-- channel says the accounts or the partners may have changed: a disabled, removed or re-roled
-- account, or a disabled partner, is refused from the notification on (milliseconds after the
-- commit), and nothing is remembered while a gateway's LISTEN connection is down.

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
