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
revoke all on data.audit_chains from gateway_app;

alter table data.access_events add column chain_id integer references data.audit_chains;
alter table data.access_events add column chain_seq bigint;
create unique index access_events_chain_position on data.access_events (chain_id, chain_seq)
    where chain_id is not null;

create sequence data.access_event_seq as bigint;
select setval('data.access_event_seq', coalesce((select max(seq) from data.access_events), 0) + 1,
              false);

-- The canonical text of a chained event: its chain and position, then the fields of the first
-- chain's definition (0002), each as "<length>:<text>" or "N" for null.
create function data.access_event_chain_hash(prev bytea, e data.access_events) returns bytea
    language sql stable
    as $$
    select sha256(prev || convert_to(
        data.canonical_field(e.chain_id::text) || data.canonical_field(e.chain_seq::text)
        || data.canonical_field(e.seq::text)
        || data.canonical_field(to_char(e.occurred_at at time zone 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || data.canonical_field(e.request_id) || data.canonical_field(e.kind)
        || data.canonical_field(e.issuer) || data.canonical_field(e.subject)
        || data.canonical_field(e.role) || data.canonical_field(e.actor_id::text)
        || data.canonical_field(e.patient_id::text) || data.canonical_field(e.client_id)
        || data.canonical_field(e.break_glass_reason) || data.canonical_field(e.objects::text)
        || data.canonical_field(e.detail::text), 'UTF8'))
$$;

-- The transaction's chain and its tail travel in transaction-local settings: the first event
-- takes a chain, the next ones continue it, the statement trigger stores the tail in the head.
create or replace function data.chain_access_event() returns trigger
    language plpgsql security definer set search_path = pg_catalog, data
    as $$
declare
    chain integer := nullif(current_setting('gateway.audit_chain', true), '')::integer;
    prev_seq bigint;
    prev_hash bytea;
    tail text;
    any_chain integer;
begin
    if chain is null then
        select c.id, c.last_seq, c.last_hash into chain, prev_seq, prev_hash
          from data.audit_chains c
         order by random()
         limit 1
           for update skip locked;
        if chain is null then  -- every chain is being written: wait for one
            any_chain := 1 + floor(random() * 32)::integer;
            select c.id, c.last_seq, c.last_hash into chain, prev_seq, prev_hash
              from data.audit_chains c
             where c.id = any_chain
               for update;
        end if;
        perform set_config('gateway.audit_chain', chain::text, true);
    else
        tail := current_setting('gateway.audit_tail');
        prev_seq := split_part(tail, ':', 1)::bigint;
        prev_hash := decode(split_part(tail, ':', 2), 'hex');
    end if;
    new.occurred_at := now();
    new.seq := nextval('data.access_event_seq');
    new.chain_id := chain;
    new.chain_seq := prev_seq + 1;
    new.prev_hash := prev_hash;
    new.hash := data.access_event_chain_hash(prev_hash, new);
    perform set_config('gateway.audit_tail', new.chain_seq || ':' || encode(new.hash, 'hex'), true);
    return new;
end
$$;

create or replace function data.advance_chain_head() returns trigger
    language plpgsql security definer set search_path = pg_catalog, data
    as $$
declare
    chain integer := nullif(current_setting('gateway.audit_chain', true), '')::integer;
    tail text := current_setting('gateway.audit_tail', true);
begin
    if chain is not null and tail is not null and tail <> '' then
        update data.audit_chains
           set last_seq = split_part(tail, ':', 1)::bigint,
               last_hash = decode(split_part(tail, ':', 2), 'hex')
         where id = chain;
    end if;
    return null;
end
$$;

revoke all on function data.access_event_chain_hash(bytea, data.access_events) from public;

-- Layer 4's questions and the audit write in one round trip: the events are stored only when
-- every asked patient is one the caller may hold; otherwise nothing is stored and the foreign
-- patients are returned (the gateway then withholds the response and records an alert).
-- p_asks is [{"needs": "<SMART scope or empty>", "candidates": ["<uuid>", ...]}, ...].
create function api.record_access_events_if_authorized(
    p_role text, p_actor uuid, p_scopes text[], p_asks jsonb, p_events jsonb
) returns setof uuid
    language plpgsql volatile
    as $$
declare
    foreign_patients uuid[];
begin
    select array_agg(distinct candidate) into foreign_patients
      from jsonb_to_recordset(p_asks) as a(needs text, candidates uuid[])
     cross join lateral unnest(a.candidates) as candidate
     where candidate not in (
         select x from api.authorized_patients(p_role, p_actor, p_scopes, a.needs, a.candidates) x);
    if foreign_patients is not null then
        return query select unnest(foreign_patients);
        return;
    end if;
    perform api.record_access_events(p_events);
end
$$;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
