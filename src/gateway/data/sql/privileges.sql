-- Who may do what, all of it: the application role (gateway_app), the audit reader
-- (gateway_audit_reader) and PUBLIC. Before this file runs, the migrate revokes every privilege
-- anyone but the owner holds on the schemas data and api and on what is in them (PUBLIC's and
-- default privileges included), in the same transaction: these lines are the whole of it (a grant
-- made by hand does not survive a migrate) and no session ever sees the moment between.

-- A function is made executable by PUBLIC; none of api is. (Revoking from PUBLIC on the tables
-- and sequences changes nothing but writes their privileges out, the owner's alone where nobody
-- else has any, the same on every database whatever its history.)
revoke all on all functions in schema api from public;
revoke all on all tables in schema data from public;
revoke all on all sequences in schema data from public;
-- What PostgreSQL gives every function (the triggers' functions and those of the audit trail's
-- hashing), written out like the rest; two of them are taken back at the end.
grant execute on all functions in schema data to public;

grant usage on schema data, api to gateway_app;
grant usage on schema data to gateway_audit_reader;

-- The application reads through row-level security (policies.sql) and through the api
-- functions; it never reads accounts (api.account_for does, as the owner).
grant select on data.patients, data.clinicians, data.partners, data.consultations,
    data.recordings to gateway_app;
-- Append-only: the audit trail takes inserts, and no update, delete or truncate.
grant select, insert on data.access_events to gateway_app;
grant select on data.audit_field_sets to gateway_app;  -- field names, for the access log
grant select, insert on data.consents, data.break_glass_grants, data.consent_requests
    to gateway_app;
grant update (revoked_at) on data.consents to gateway_app;
grant update (answered_at, approved, consent_id, code_digest, code_expires_at, code_redeemed_at)
    on data.consent_requests to gateway_app;
grant execute on all functions in schema api to gateway_app;

-- The audit reader (migration 0019): the events, the field sets they name and the chain heads,
-- nothing else.
grant select on data.access_events, data.audit_field_sets, data.audit_chain_head,
    data.audit_chains to gateway_audit_reader;
-- The archive catalog and the checkpoints (migration 0021): which months are archived and where
-- (the access log says so), and where the last verification stopped. The nightly CronJob, as the
-- audit reader, also makes the months ahead and records its checkpoints, through the two
-- functions that do only that (audit.sql).
revoke all on schema audit_partitions from public;  -- the months: through data.access_events
grant select on data.audit_archives to gateway_app, gateway_audit_reader;
grant select on data.audit_checkpoints, data.restored_access_events to gateway_audit_reader;
revoke all on function data.create_access_event_partitions(integer) from public;
revoke all on function data.record_audit_checkpoint(integer, bigint, bytea) from public;
grant execute on function data.create_access_event_partitions(integer),
    data.record_audit_checkpoint(integer, bigint, bytea) to gateway_audit_reader;

-- Only the owner's triggers call these.
revoke all on function data.advance_chain_head() from public;
revoke all on function data.access_event_chain_hash(bytea, data.access_events) from public;
