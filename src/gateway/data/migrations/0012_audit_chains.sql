-- An audit trail nobody queues on: 32 hash chains instead of one.
--
-- Every audit write locked the one chain-head row, so concurrent requests, and every replica,
-- waited for each other; under load support pages timed out on it. Now an event belongs to one
-- of 32 chains. A transaction's first event takes a chain no other writer holds (FOR UPDATE SKIP
-- LOCKED; only when all 32 are held does it wait for one), and all its events continue that
-- chain; the chain's head row is advanced once per statement. Each chain is append-only and
-- tamper-evident on its own: an event's hash covers its chain, its position in the chain, its
-- predecessor's hash and every field. `gateway audit verify` checks the events written before this
-- migration as one chain (audit_chain_head, which stops advancing) and every new chain against its
-- head row. `seq` still orders all events (the access log pages on it) and now comes from a
-- sequence, so it may have gaps (a rolled-back write); the chains have none.

create table data.audit_chains (
    id integer primary key,
    last_seq bigint not null default 0,
    last_hash bytea not null
);
insert into data.audit_chains (id, last_hash)
select chain, sha256(convert_to('consultation-gateway audit chain ' || chain, 'UTF8'))
from generate_series(1, 32) chain;

alter table data.access_events add column chain_id integer references data.audit_chains;
alter table data.access_events add column chain_seq bigint;
create unique index access_events_chain_position on data.access_events (chain_id, chain_seq)
    where chain_id is not null;

create sequence data.access_event_seq as bigint;
select setval('data.access_event_seq', coalesce((select max(seq) from data.access_events), 0) + 1,
              false);

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
