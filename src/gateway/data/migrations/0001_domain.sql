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

-- Layer 3: the caller's scope, as set by api.enter_scope for the current transaction only.
create function api.scope_role() returns text
    language sql stable parallel safe
    as $$ select nullif(current_setting('gateway.role', true), '') $$;

create function api.scope_actor() returns uuid
    language sql stable parallel safe
    as $$ select nullif(current_setting('gateway.actor_id', true), '')::uuid $$;

create function api.enter_scope(p_role text, p_actor uuid) returns void
    language plpgsql volatile
    as $$
begin
    perform set_config('gateway.role', coalesce(p_role, ''), true);
    perform set_config('gateway.actor_id', coalesce(p_actor::text, ''), true);
end
$$;

alter table data.patients enable row level security;
alter table data.patients force row level security;
alter table data.consultations enable row level security;
alter table data.consultations force row level security;
alter table data.recordings enable row level security;
alter table data.recordings force row level security;
alter table data.consents enable row level security;
alter table data.consents force row level security;
alter table data.break_glass_grants enable row level security;
alter table data.break_glass_grants force row level security;
alter table data.access_events enable row level security;
alter table data.access_events force row level security;

create policy break_glass_rows on data.break_glass_grants for select to gateway_app using (
    (api.scope_role() = 'clinician' and clinician_id = api.scope_actor())
    or (api.scope_role() = 'patient' and patient_id = api.scope_actor())
);

create policy consultation_rows on data.consultations for select to gateway_app using (
    (api.scope_role() = 'patient' and patient_id = api.scope_actor())
    or (api.scope_role() = 'clinician' and (
        clinician_id = api.scope_actor()
        or exists (
            select 1 from data.break_glass_grants g
            where g.clinician_id = api.scope_actor()
              and g.patient_id = consultations.patient_id
              and g.revoked_at is null
              and now() < g.expires_at
        )
    ))
);

-- A segment is visible exactly when its consultation is (the subquery is itself under RLS).
create policy recording_rows on data.recordings for select to gateway_app using (
    exists (select 1 from data.consultations c where c.id = recordings.consultation_id)
);

create policy patient_rows on data.patients for select to gateway_app using (
    (api.scope_role() = 'patient' and id = api.scope_actor())
    or (api.scope_role() = 'clinician'
        and exists (select 1 from data.consultations c where c.patient_id = patients.id))
);

create policy consent_rows on data.consents for select to gateway_app using (
    api.scope_role() = 'patient' and patient_id = api.scope_actor()
);

create policy access_event_rows on data.access_events for select to gateway_app using (
    api.scope_role() = 'patient' and patient_id = api.scope_actor()
);
create policy access_event_append on data.access_events for insert to gateway_app with check (true);

-- Layer 2: every function below carries the caller's visibility predicate from its parameters,
-- independently of the RLS settings it also makes.
create function api.consultation_visible(
    p_role text, p_actor uuid, p_patient uuid, p_clinician uuid
) returns boolean
    language sql stable
    as $$
    select (p_role = 'patient' and p_patient = p_actor)
        or (p_role = 'clinician' and (
            p_clinician = p_actor
            or exists (
                select 1 from data.break_glass_grants g
                where g.clinician_id = p_actor
                  and g.patient_id = p_patient
                  and g.revoked_at is null
                  and now() < g.expires_at
            )
        ))
$$;

create function api.account_for(p_issuer text, p_subject text)
    returns table (role text, patient_id uuid, clinician_id uuid, partner_id uuid)
    language sql stable
    as $$
    select a.role, a.patient_id, a.clinician_id, a.partner_id
    from data.accounts a
    where a.issuer = p_issuer and a.subject = p_subject
$$;

create function api.consultations_by_id(p_role text, p_actor uuid, p_ids uuid[])
    returns setof data.consultations
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor);
    return query
        select c.* from data.consultations c
        where c.id = any(p_ids)
          and api.consultation_visible(p_role, p_actor, c.patient_id, c.clinician_id);
end
$$;

-- The caller's own list: a patient's consultations, or those a clinician conducted, newest first,
-- keyset-paginated on (scheduled_at, id).
create function api.consultations_page(
    p_role text, p_actor uuid, p_limit integer, p_after_at timestamptz, p_after_id uuid
) returns setof data.consultations
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor);
    if p_role = 'patient' then
        return query
            select c.* from data.consultations c
            where c.patient_id = p_actor
              and (p_after_at is null or (c.scheduled_at, c.id) < (p_after_at, p_after_id))
            order by c.scheduled_at desc, c.id desc
            limit p_limit;
    elsif p_role = 'clinician' then
        return query
            select c.* from data.consultations c
            where c.clinician_id = p_actor
              and (p_after_at is null or (c.scheduled_at, c.id) < (p_after_at, p_after_id))
            order by c.scheduled_at desc, c.id desc
            limit p_limit;
    end if;
end
$$;

create function api.recordings_by_consultation(p_role text, p_actor uuid, p_ids uuid[])
    returns setof data.recordings
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor);
    return query
        select r.* from data.recordings r
        join data.consultations c on c.id = r.consultation_id
        where r.consultation_id = any(p_ids)
          and api.consultation_visible(p_role, p_actor, c.patient_id, c.clinician_id)
        order by r.consultation_id, r.segment_index;
end
$$;

create function api.recordings_by_id(p_role text, p_actor uuid, p_ids uuid[])
    returns setof data.recordings
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor);
    return query
        select r.* from data.recordings r
        join data.consultations c on c.id = r.consultation_id
        where r.id = any(p_ids)
          and api.consultation_visible(p_role, p_actor, c.patient_id, c.clinician_id);
end
$$;

create function api.patients_by_id(p_role text, p_actor uuid, p_ids uuid[])
    returns setof data.patients
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor);
    return query
        select p.* from data.patients p
        where p.id = any(p_ids)
          and ((p_role = 'patient' and p.id = p_actor)
               or exists (
                   select 1 from data.consultations c
                   where c.patient_id = p.id
                     and api.consultation_visible(p_role, p_actor, c.patient_id, c.clinician_id)
               ));
end
$$;

create function api.clinicians_by_id(p_ids uuid[])
    returns setof data.clinicians
    language sql stable
    as $$ select c.* from data.clinicians c where c.id = any(p_ids) $$;

-- Layer 4's independent question: which of these patients may this caller see at all?
create function api.authorized_patients(p_role text, p_actor uuid, p_candidates uuid[])
    returns setof uuid
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor);
    if p_role = 'patient' then
        return query select x from unnest(p_candidates) x where x = p_actor;
    elsif p_role = 'clinician' then
        return query
            select x from unnest(p_candidates) x
            where exists (select 1 from data.consultations c
                          where c.patient_id = x and c.clinician_id = p_actor)
               or exists (select 1 from data.break_glass_grants g
                          where g.patient_id = x and g.clinician_id = p_actor
                            and g.revoked_at is null and now() < g.expires_at);
    end if;
end
$$;

create function api.record_access_events(p_events jsonb)
    returns void
    language sql volatile
    as $$
    insert into data.access_events
        (request_id, kind, issuer, subject, role, actor_id, patient_id, object_type, object_id,
         fields, detail)
    select e.request_id, e.kind, e.issuer, e.subject, e.role, e.actor_id, e.patient_id,
           e.object_type, e.object_id, coalesce(e.fields, '{}'), coalesce(e.detail, '{}')
    from jsonb_to_recordset(p_events) as e(
        request_id text, kind text, issuer text, subject text, role text, actor_id uuid,
        patient_id uuid, object_type text, object_id uuid, fields text[], detail jsonb)
$$;

grant usage on schema data, api to gateway_app;
grant select on data.patients, data.clinicians, data.partners, data.accounts, data.consultations,
    data.recordings, data.consents, data.break_glass_grants to gateway_app;
grant select, insert on data.access_events to gateway_app;
revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
