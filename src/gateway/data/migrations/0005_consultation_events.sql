-- Live consultation events for subscriptions: a change of a consultation (status, mode) or a
-- new recording segment notifies channel `consultation_events` with IDs only; subscribers
-- re-read the row through their own scoped loaders, so a notification carries no patient data.

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
