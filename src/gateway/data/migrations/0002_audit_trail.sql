-- The audit trail of every disclosure: one event per (request, patient, kind), listing the objects
-- and fields disclosed; append-only for the application role and tamper-evident through a hash
-- chain kept by a trigger the application role cannot bypass.

alter table data.access_events drop column object_type;
alter table data.access_events drop column object_id;
alter table data.access_events drop column fields;
alter table data.access_events drop constraint access_events_kind_check;
alter table data.access_events add constraint access_events_kind_check
    check (kind in ('disclosure', 'denial', 'alert', 'media'));
alter table data.access_events add column client_id text;
alter table data.access_events add column break_glass_reason text;
-- [{"type": "Consultation", "id": "<uuid>", "fields": ["reason", ...]}, ...]
alter table data.access_events add column objects jsonb not null default '[]';
alter table data.access_events add column seq bigint unique;
alter table data.access_events add column prev_hash bytea;
alter table data.access_events add column hash bytea;

create table data.audit_chain_head (
    id integer primary key check (id = 1),
    last_seq bigint not null,
    last_hash bytea not null
);
insert into data.audit_chain_head values (1, 0, sha256(convert_to('consultation-gateway audit', 'UTF8')));
-- (the genesis hash above is the prev_hash of event seq 1)

create index access_events_by_seq on data.access_events (patient_id, seq desc);

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
