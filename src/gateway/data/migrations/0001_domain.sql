-- The domain of DESIGN.md, the application role, and row-level security.
--
-- Tables live in schema `data`; the gateway reads them only through the functions of schema `api`,
-- which set the caller's scope with set_config(..., true) (gone when the statement's transaction
-- ends) and carry the caller's visibility predicate themselves (layer 2). The RLS policies below
-- (layer 3) read only those settings, so an unfiltered query through the application role returns
-- nothing foreign.

create schema data;
create schema api;

-- The application role owns nothing and can never see past row-level security. Creating it
-- needs CREATEROLE; a pre-existing role with dangerous attributes stops the migration.
do $$
begin
    if not exists (select from pg_roles where rolname = 'gateway_app') then
        create role gateway_app nologin nosuperuser nobypassrls nocreatedb nocreaterole noinherit;
    elsif exists (select from pg_roles where rolname = 'gateway_app' and (rolsuper or rolbypassrls)) then
        raise exception 'role gateway_app exists with SUPERUSER or BYPASSRLS; refusing to migrate';
    end if;
end
$$;

create table data.patients (
    id uuid primary key,
    display_name text not null,
    birth_date date not null
);

create table data.clinicians (
    id uuid primary key,
    display_name text not null,
    specialty text not null
);

create table data.partners (
    id uuid primary key,
    name text not null
);

-- Identity binding: (issuer, subject) of a verified token -> role and the party it acts for.
create table data.accounts (
    issuer text not null,
    subject text not null,
    role text not null check (role in ('patient', 'clinician', 'support', 'partner', 'auditor')),
    patient_id uuid references data.patients,
    clinician_id uuid references data.clinicians,
    partner_id uuid references data.partners,
    primary key (issuer, subject),
    check ((role = 'patient') = (patient_id is not null)),
    check ((role = 'clinician') = (clinician_id is not null)),
    check ((role = 'partner') = (partner_id is not null))
);

create table data.consultations (
    id uuid primary key,
    patient_id uuid not null references data.patients,
    clinician_id uuid not null references data.clinicians,
    scheduled_at timestamptz not null,
    status text not null check (status in ('SCHEDULED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED')),
    mode text not null check (mode in ('AUDIO', 'VIDEO')),
    reason text not null,
    summary text,
    clinician_notes text,
    unique (id, patient_id)
);
create index consultations_by_patient on data.consultations (patient_id, scheduled_at desc, id desc);
create index consultations_by_clinician on data.consultations (clinician_id, scheduled_at desc, id desc);

-- A consultation's recording is several segments: audio, then video after a switch of mode.
-- patient_id is the consultation's (enforced by the composite foreign key), so every segment
-- names its owner in its own row.
create table data.recordings (
    id uuid primary key,
    consultation_id uuid not null,
    patient_id uuid not null,
    segment_index integer not null check (segment_index >= 0),
    mode text not null check (mode in ('AUDIO', 'VIDEO')),
    started_at timestamptz not null,
    duration_seconds integer not null check (duration_seconds >= 0),
    content_type text not null,
    byte_size bigint not null check (byte_size >= 0),
    storage_key text not null,
    foreign key (consultation_id, patient_id) references data.consultations (id, patient_id),
    unique (consultation_id, segment_index)
);

create table data.consents (
    id uuid primary key,
    patient_id uuid not null references data.patients,
    partner_id uuid not null references data.partners,
    scopes text[] not null,
    granted_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz
);
create index consents_by_partner on data.consents (partner_id, patient_id);
create index consents_by_patient on data.consents (patient_id);

create table data.break_glass_grants (
    id uuid primary key,
    clinician_id uuid not null references data.clinicians,
    patient_id uuid not null references data.patients,
    reason text not null,
    opened_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz,
    check (expires_at > opened_at)
);
create index break_glass_by_clinician on data.break_glass_grants (clinician_id, patient_id, expires_at);

-- The audit trail (append-only for the application role).
create table data.access_events (
    id bigint generated always as identity primary key,
    occurred_at timestamptz not null default now(),
    request_id text not null,
    kind text not null check (kind in ('disclosure', 'denial', 'alert')),
    issuer text not null,
    subject text not null,
    role text not null,
    actor_id uuid,
    patient_id uuid,
    object_type text,
    object_id uuid,
    fields text[] not null default '{}',
    detail jsonb not null default '{}'
);
create index access_events_by_patient on data.access_events (patient_id, occurred_at desc);

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations), and so is which
-- tables force row-level security (policies.sql).
