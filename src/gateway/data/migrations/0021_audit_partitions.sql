-- The audit trail in monthly partitions (issue 26), an archive catalog and verification
-- checkpoints.
--
-- data.access_events becomes a table partitioned by range of occurred_at, one partition per
-- calendar month (UTC), each a table of schema audit_partitions: nobody but the owner may use that
-- schema, so every read and write goes through the parent and its row-level security, triggers
-- and grants. The partitions are made ahead: here for every month the trail holds and the three
-- to come, then by data.create_access_event_partitions (audit.sql) on each migrate and by the
-- nightly CronJob. A month with no partition refuses its events (and so the disclosures they
-- record): it fails closed.
--
-- The existing trail is copied row for row, every column as it was (ids, seq, chains, hashes), in
-- one transaction that holds the old table exclusively, then the old table is dropped. The chains
-- are untouched: `gateway audit verify` passes on the copy as on the original
-- (tests/test_audit_partitions.py). Unique keys must hold the partition key: seq and a chain
-- position are unique within their month, and across months by construction (a sequence; the
-- chain head's row lock), which verify checks.
--
-- data.audit_archives lists every month archived (`gateway audit archive`): where its file is,
-- its digest and, per chain, the runs of positions it holds with the hashes at their edges, so
-- that verification and the access log carry on across what is no longer in the database.
-- data.audit_checkpoints records, per chain, the last position a verification passed.

create schema audit_partitions;  -- no privilege to anyone but its owner (privileges.sql)

drop function if exists data.event_objects(data.access_events);
drop function if exists data.access_event_chain_hash(bytea, data.access_events);
drop function if exists data.access_event_hash(bytea, data.access_events);  -- dead since 0012

alter table data.access_events rename to access_events_before_0021;
-- The old table forces row-level security and has no policy for its owner: as it stands the
-- owner would read none of it (and copy nothing). Lifted for the copy; the table is dropped.
alter table data.access_events_before_0021 no force row level security;

create table data.access_events (
    id bigint generated always as identity,
    occurred_at timestamptz not null default now(),
    request_id text not null,
    kind text not null,
    issuer text not null,
    subject text not null,
    role text not null,
    actor_id uuid,
    patient_id uuid,
    detail jsonb not null default '{}',
    client_id text,
    break_glass_reason text,
    objects jsonb not null default '[]',
    seq bigint,
    prev_hash bytea,
    hash bytea,
    chain_id integer references data.audit_chains,
    chain_seq bigint,
    object_groups jsonb,
    object_ids uuid[],
    object_sets integer[],
    object_counts integer[],
    constraint access_events_partitioned_pkey primary key (id, occurred_at),
    constraint access_events_partitioned_seq_key unique (seq, occurred_at),
    constraint access_events_partitioned_kind_check check (kind in (
        'disclosure', 'denial', 'alert', 'media', 'consent-granted', 'consent-revoked',
        'break-glass-opened', 'account-changed', 'partner-changed', 'audit-archived',
        'audit-archive-deleted', 'audit-restored'))
) partition by range (occurred_at);

-- The months the trail holds and the three to come.
do $$
declare
    month timestamptz := date_trunc('month', coalesce(
        (select min(occurred_at) from data.access_events_before_0021), now()) at time zone 'UTC')
        at time zone 'UTC';
    last timestamptz := date_trunc('month', greatest(
        (select max(occurred_at) from data.access_events_before_0021), now()) at time zone 'UTC')
        at time zone 'UTC' + interval '3 months';
begin
    while month <= last loop
        execute format(
            'create table audit_partitions.%I partition of data.access_events '
            'for values from (%L) to (%L)',
            'access_events_' || to_char(month at time zone 'UTC', 'YYYY_MM'),
            month, (month at time zone 'UTC' + interval '1 month') at time zone 'UTC');
        month := (month at time zone 'UTC' + interval '1 month') at time zone 'UTC';
    end loop;
end
$$;

insert into data.access_events
    (id, occurred_at, request_id, kind, issuer, subject, role, actor_id, patient_id, detail,
     client_id, break_glass_reason, objects, seq, prev_hash, hash, chain_id, chain_seq,
     object_groups, object_ids, object_sets, object_counts)
overriding system value
select id, occurred_at, request_id, kind, issuer, subject, role, actor_id, patient_id, detail,
       client_id, break_glass_reason, objects, seq, prev_hash, hash, chain_id, chain_seq,
       object_groups, object_ids, object_sets, object_counts
from data.access_events_before_0021
order by id;

do $$
begin
    if (select count(*) from data.access_events)
       <> (select count(*) from data.access_events_before_0021) then
        raise exception 'the audit trail''s copy differs from the trail; nothing was changed';
    end if;
end
$$;

select setval(pg_get_serial_sequence('data.access_events', 'id'),
              coalesce((select max(id) from data.access_events), 0) + 1, false);

drop table data.access_events_before_0021;

-- The old names, for the plans and the tests that name them.
do $$
begin
    execute format('alter sequence %s rename to access_events_id_seq',
                   pg_get_serial_sequence('data.access_events', 'id'));
end
$$;
alter table data.access_events rename constraint access_events_partitioned_pkey
    to access_events_pkey;
alter table data.access_events rename constraint access_events_partitioned_seq_key
    to access_events_seq_key;
alter table data.access_events rename constraint access_events_partitioned_kind_check
    to access_events_kind_check;

create index access_events_by_patient on data.access_events (patient_id, occurred_at desc);
create index access_events_by_seq on data.access_events (patient_id, seq desc);
create unique index access_events_chain_position
    on data.access_events (chain_id, chain_seq, occurred_at) where chain_id is not null;
create index access_events_by_others on data.access_events (patient_id, seq desc)
    where role is distinct from 'patient' and seq is not null;
create index access_events_emergency on data.access_events (patient_id, seq desc)
    where break_glass_reason is not null and seq is not null;

create table data.audit_archives (
    id integer generated always as identity primary key,
    partition_name text not null unique,
    period_start timestamptz not null,
    period_end timestamptz not null,
    location text not null,
    sha256 text not null,
    bytes bigint not null,
    events bigint not null,
    runs jsonb not null,
    archived_at timestamptz not null default now(),
    deleted_at timestamptz,
    check (period_end > period_start)
);

-- A month restored for the auditors' queries (`gateway audit restore`), read from its archive
-- after the archive is checked; the audit reader reads it, the application does not.
create table data.restored_access_events (
    archive_id integer not null references data.audit_archives,
    id bigint not null,
    occurred_at timestamptz not null,
    seq bigint,
    request_id text not null,
    kind text not null,
    issuer text not null,
    subject text not null,
    role text not null,
    actor_id uuid,
    patient_id uuid,
    client_id text,
    break_glass_reason text,
    objects jsonb not null,
    object_groups jsonb,
    object_ids uuid[],
    detail jsonb not null,
    chain_id integer,
    chain_seq bigint,
    hash bytea
);
create index restored_access_events_by_patient
    on data.restored_access_events (patient_id, occurred_at);

create table data.audit_checkpoints (
    chain_id integer primary key,
    chain_seq bigint not null,
    hash bytea not null,
    verified_at timestamptz not null default now()
);

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
