-- Every role: support staff, partners under consent and scopes, auditors, and break-glass.
--
-- Loader functions now take the caller's token scopes and return, beside each row, the grant it
-- was seen under: the consent's scopes (intersected with the token's) for a partner, the reason
-- for a clinician reading under break-glass. Field rules that depend on the row read these.

drop function api.consultations_by_id(text, uuid, uuid[]);
drop function api.consultations_page(text, uuid, integer, timestamptz, uuid);
drop function api.recordings_by_consultation(text, uuid, uuid[]);
drop function api.recordings_by_id(text, uuid, uuid[]);
drop function api.patients_by_id(text, uuid, uuid[]);
drop function api.authorized_patients(text, uuid, uuid[]);
drop function api.access_events_page(text, uuid, integer, bigint);
drop function api.consultation_visible(text, uuid, uuid, uuid);

alter table data.consents add constraint consents_scopes_known check (
    scopes <@ array['patient/Consultation.rs', 'patient/Recording.rs', 'patient/Patient.rs']
    and cardinality(scopes) > 0
);
alter table data.consents add constraint consents_expiry_after_grant check (expires_at > granted_at);
alter table data.break_glass_grants add constraint break_glass_reason_length
    check (length(btrim(reason)) >= 20);
-- Hard ceilings the database keeps whatever the gateway is configured to allow.
alter table data.break_glass_grants add constraint break_glass_at_most_a_day
    check (expires_at <= opened_at + interval '24 hours');
alter table data.consents add constraint consents_at_most_three_years
    check (expires_at <= granted_at + interval '3 years');

-- Start times are the database's clock, never the caller's.
create function data.stamp_start() returns trigger
    language plpgsql
    as $$
begin
    if tg_table_name = 'consents' then
        new.granted_at := now();
    else
        new.opened_at := now();
    end if;
    return new;
end
$$;
create trigger consents_granted_now before insert on data.consents
    for each row execute function data.stamp_start();
create trigger break_glass_opened_now before insert on data.break_glass_grants
    for each row execute function data.stamp_start();

-- A recording's media key names its patient and itself, and no two recordings share one, so
-- a media file can only ever be served for the row that owns it.
alter table data.recordings add constraint recordings_storage_key_unique unique (storage_key);
alter table data.recordings add constraint recordings_storage_key_owned check (
    storage_key ~ ('^recordings/' || patient_id::text || '/' || id::text || '\.[a-z0-9]+$')
);

-- Identity binding is read through this function only; the application role cannot list
-- accounts.
drop function api.account_for(text, text);
create function api.account_for(p_issuer text, p_subject text)
    returns table (role text, patient_id uuid, clinician_id uuid, partner_id uuid)
    language sql stable security definer set search_path = pg_catalog, data
    as $$
    select a.role, a.patient_id, a.clinician_id, a.partner_id
    from data.accounts a
    where a.issuer = p_issuer and a.subject = p_subject
$$;
revoke select on data.accounts from gateway_app;
create index consultations_by_time on data.consultations (scheduled_at desc, id desc);
create index consents_active on data.consents (patient_id, partner_id) where revoked_at is null;

-- Layer 3 settings: the token's scopes too (partners).
create or replace function api.enter_scope(p_role text, p_actor uuid, p_scopes text[])
    returns void
    language plpgsql volatile
    as $$
begin
    perform set_config('gateway.role', coalesce(p_role, ''), true);
    perform set_config('gateway.actor_id', coalesce(p_actor::text, ''), true);
    perform set_config('gateway.scopes', array_to_string(coalesce(p_scopes, '{}'), ' '), true);
end
$$;
drop function api.enter_scope(text, uuid);

create function api.scope_scopes() returns text[]
    language sql stable parallel safe
    as $$ select string_to_array(nullif(current_setting('gateway.scopes', true), ''), ' ') $$;

-- RLS (layer 3), rewritten for every role.
drop policy consultation_rows on data.consultations;
create policy consultation_rows on data.consultations for select to gateway_app using (
    (api.scope_role() = 'patient' and patient_id = api.scope_actor())
    or (api.scope_role() = 'clinician' and (
        clinician_id = api.scope_actor()
        or exists (
            select 1 from data.break_glass_grants g
            where g.clinician_id = api.scope_actor() and g.patient_id = consultations.patient_id
              and g.revoked_at is null and now() < g.expires_at)))
    or api.scope_role() = 'support'
    or (api.scope_role() = 'partner'
        and 'patient/Consultation.rs' = any(api.scope_scopes())
        and exists (
            select 1 from data.consents k
            where k.partner_id = api.scope_actor() and k.patient_id = consultations.patient_id
              and k.revoked_at is null and now() < k.expires_at
              and 'patient/Consultation.rs' = any(k.scopes)))
);

drop policy recording_rows on data.recordings;
create policy recording_rows on data.recordings for select to gateway_app using (
    (api.scope_role() in ('patient', 'clinician')
        and exists (select 1 from data.consultations c where c.id = recordings.consultation_id))
    or (api.scope_role() = 'partner'
        and 'patient/Recording.rs' = any(api.scope_scopes())
        and exists (
            select 1 from data.consents k
            where k.partner_id = api.scope_actor() and k.patient_id = recordings.patient_id
              and k.revoked_at is null and now() < k.expires_at
              and 'patient/Recording.rs' = any(k.scopes)))
);

drop policy patient_rows on data.patients;
create policy patient_rows on data.patients for select to gateway_app using (
    (api.scope_role() = 'patient' and id = api.scope_actor())
    or (api.scope_role() = 'clinician'
        and exists (select 1 from data.consultations c where c.patient_id = patients.id))
    or api.scope_role() = 'support'
    or (api.scope_role() = 'partner'
        and 'patient/Patient.rs' = any(api.scope_scopes())
        and exists (
            select 1 from data.consents k
            where k.partner_id = api.scope_actor() and k.patient_id = patients.id
              and k.revoked_at is null and now() < k.expires_at
              and 'patient/Patient.rs' = any(k.scopes)))
);

drop policy consent_rows on data.consents;
create policy consent_rows on data.consents for select to gateway_app using (
    (api.scope_role() = 'patient' and patient_id = api.scope_actor())
    or (api.scope_role() = 'partner' and partner_id = api.scope_actor())
);
create policy consent_grant on data.consents for insert to gateway_app with check (
    api.scope_role() = 'patient' and patient_id = api.scope_actor()
);
create policy consent_revoke on data.consents for update to gateway_app
    using (api.scope_role() = 'patient' and patient_id = api.scope_actor())
    with check (api.scope_role() = 'patient' and patient_id = api.scope_actor());

create policy break_glass_open on data.break_glass_grants for insert to gateway_app with check (
    api.scope_role() = 'clinician' and clinician_id = api.scope_actor()
);

drop policy access_event_rows on data.access_events;
create policy access_event_rows on data.access_events for select to gateway_app using (
    (api.scope_role() = 'patient' and patient_id = api.scope_actor())
    or api.scope_role() = 'auditor'
);

grant insert on data.consents to gateway_app;
grant update (revoked_at) on data.consents to gateway_app;
grant insert on data.break_glass_grants to gateway_app;

-- Layer 2: the grant under which a caller sees one patient's row of a type that needs
-- p_needs (a SMART scope). No row: not visible. Parameters only; no settings read.
create function api.grant_for(
    p_role text, p_actor uuid, p_scopes text[], p_patient uuid, p_clinician uuid, p_needs text
) returns table (consent_scopes text[], break_glass_reason text)
    language sql stable
    as $$
    select x.consent_scopes, x.break_glass_reason from (
        select 1 as priority, null::text[] as consent_scopes, null::text as break_glass_reason
        where p_role = 'patient' and p_patient = p_actor
        union all
        select 1, null, null
        where p_role = 'clinician' and p_clinician = p_actor
        union all
        select 2, null, g.reason
        from data.break_glass_grants g
        where p_role = 'clinician' and g.clinician_id = p_actor and g.patient_id = p_patient
          and g.revoked_at is null and now() < g.expires_at
        union all
        select 1, null, null
        where p_role = 'support' and p_needs in ('patient/Consultation.rs', 'patient/Patient.rs')
        union all
        select 1, array(select s from unnest(k.scopes) s where s = any(p_scopes) order by s), null
        from data.consents k
        where p_role = 'partner' and k.partner_id = p_actor and k.patient_id = p_patient
          and k.revoked_at is null and now() < k.expires_at
          and p_needs = any(k.scopes) and p_needs = any(p_scopes)
    ) x
    order by x.priority
    limit 1
$$;

create function api.consultations_by_id(p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
    returns table (consultation data.consultations, consent_scopes text[], break_glass_reason text)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select c, g.consent_scopes, g.break_glass_reason
        from data.consultations c
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Consultation.rs') g
        where c.id = any(p_ids);
end
$$;

-- The caller's list, newest first, keyset on (scheduled_at, id): a patient's own, a clinician's
-- conducted, every consultation for support, consented patients' for a partner.
create function api.consultations_page(
    p_role text, p_actor uuid, p_scopes text[], p_limit integer, p_after_at timestamptz,
    p_after_id uuid
) returns table (consultation data.consultations, consent_scopes text[], break_glass_reason text)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select c, g.consent_scopes, g.break_glass_reason
        from data.consultations c
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Consultation.rs') g
        where (p_after_at is null or (c.scheduled_at, c.id) < (p_after_at, p_after_id))
          and case p_role
              when 'patient' then c.patient_id = p_actor
              when 'clinician' then c.clinician_id = p_actor
              when 'support' then true
              when 'partner' then c.patient_id in (
                  select k.patient_id from data.consents k
                  where k.partner_id = p_actor and k.revoked_at is null and now() < k.expires_at)
              else false
          end
        order by c.scheduled_at desc, c.id desc
        limit p_limit;
end
$$;

-- A patient's consultations, for whoever may see them: the patient, their clinicians (and a
-- clinician under break-glass: all of them), support, a consented partner.
create function api.consultations_by_patient(
    p_role text, p_actor uuid, p_scopes text[], p_patients uuid[]
) returns table (consultation data.consultations, consent_scopes text[], break_glass_reason text)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select c, g.consent_scopes, g.break_glass_reason
        from data.consultations c
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Consultation.rs') g
        where c.patient_id = any(p_patients)
        order by c.patient_id, c.scheduled_at desc, c.id desc;
end
$$;

create function api.recordings_by_consultation(
    p_role text, p_actor uuid, p_scopes text[], p_ids uuid[]
) returns table (recording data.recordings, consent_scopes text[], break_glass_reason text)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select r, g.consent_scopes, g.break_glass_reason
        from data.recordings r
        join data.consultations c on c.id = r.consultation_id
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Recording.rs') g
        where r.consultation_id = any(p_ids)
        order by r.consultation_id, r.segment_index;
end
$$;

create function api.recordings_by_id(p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
    returns table (recording data.recordings, consent_scopes text[], break_glass_reason text)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select r, g.consent_scopes, g.break_glass_reason
        from data.recordings r
        join data.consultations c on c.id = r.consultation_id
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Recording.rs') g
        where r.id = any(p_ids);
end
$$;

create function api.patients_by_id(p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
    returns table (patient data.patients, consent_scopes text[], break_glass_reason text)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select p, g.consent_scopes, g.break_glass_reason
        from data.patients p
        cross join lateral (
            select x.consent_scopes, x.break_glass_reason from (
                select 2 as priority, a.consent_scopes, a.break_glass_reason
                from api.grant_for(p_role, p_actor, p_scopes, p.id, null, 'patient/Patient.rs') a
                union all
                select 1, null, null
                where p_role = 'clinician' and exists (
                    select 1 from data.consultations c
                    where c.patient_id = p.id and c.clinician_id = p_actor)
            ) x order by x.priority limit 1
        ) g
        where p.id = any(p_ids);
end
$$;

-- Layer 4's independent questions.
create function api.conducted_or_break_glass(p_clinician uuid, p_candidates uuid[])
    returns setof uuid
    language sql stable
    as $$
    select x from unnest(p_candidates) x
    where exists (select 1 from data.consultations c
                  where c.patient_id = x and c.clinician_id = p_clinician)
       or exists (select 1 from data.break_glass_grants g
                  where g.patient_id = x and g.clinician_id = p_clinician
                    and g.revoked_at is null and now() < g.expires_at)
$$;

create function api.consenting_patients(p_partner uuid, p_scope text, p_candidates uuid[])
    returns setof uuid
    language sql stable
    as $$
    select x from unnest(p_candidates) x
    where exists (select 1 from data.consents k
                  where k.patient_id = x and k.partner_id = p_partner
                    and k.revoked_at is null and now() < k.expires_at
                    and p_scope = any(k.scopes))
$$;

create function api.authorized_patients(
    p_role text, p_actor uuid, p_scopes text[], p_needs text, p_candidates uuid[]
) returns setof uuid
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    if p_role = 'clinician' then
        return query select * from api.conducted_or_break_glass(p_actor, p_candidates);
    elsif p_role = 'partner' and p_needs = any(p_scopes) then
        return query select * from api.consenting_patients(p_actor, p_needs, p_candidates);
    end if;
end
$$;

-- The access log: a patient's own events; every patient's for an auditor.
create function api.access_events_page(
    p_role text, p_actor uuid, p_scopes text[], p_limit integer, p_before_seq bigint
) returns table (
    seq bigint, occurred_at timestamptz, kind text, subject text, role text, actor_id uuid,
    actor_name text, patient_id uuid, client_id text, break_glass_reason text, objects jsonb
)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id,
               coalesce(c.display_name, pt.name), e.patient_id, e.client_id,
               e.break_glass_reason, e.objects
        from data.access_events e
        left join data.clinicians c on c.id = e.actor_id and e.role = 'clinician'
        left join data.partners pt on pt.id = e.actor_id and e.role = 'partner'
        where (p_before_seq is null or e.seq < p_before_seq)
          and e.seq is not null
          and case p_role
              when 'patient' then e.patient_id = p_actor and e.kind in (
                  'disclosure', 'media', 'consent-granted', 'consent-revoked',
                  'break-glass-opened')
              when 'auditor' then true
              else false
          end
        order by e.seq desc
        limit p_limit;
end
$$;

-- Changes of access write their own audit event in the same statement: a change is never
-- made without its record. p_who is {"request_id", "issuer", "subject", "client_id"}.
create function api.record_change(
    p_who jsonb, p_role text, p_actor uuid, p_kind text, p_patient uuid, p_detail jsonb,
    p_break_glass_reason text
) returns void
    language sql volatile
    as $$
    insert into data.access_events
        (request_id, kind, issuer, subject, role, actor_id, patient_id, client_id,
         break_glass_reason, detail)
    values (p_who->>'request_id', p_kind, p_who->>'issuer', p_who->>'subject', p_role, p_actor,
            p_patient, p_who->>'client_id', p_break_glass_reason, p_detail)
$$;

-- Consent, by the patient.
create function api.grant_consent(
    p_who jsonb, p_role text, p_actor uuid, p_partner uuid, p_scopes text[],
    p_expires_at timestamptz
) returns setof data.consents
    language plpgsql volatile
    as $$
declare
    granted data.consents;
begin
    perform api.enter_scope(p_role, p_actor, null);
    if p_role <> 'patient' then
        return;
    end if;
    update data.consents set revoked_at = now()
    where patient_id = p_actor and partner_id = p_partner and revoked_at is null;
    insert into data.consents (id, patient_id, partner_id, scopes, expires_at)
    values (gen_random_uuid(), p_actor, p_partner,
            array(select distinct s from unnest(p_scopes) s order by s), p_expires_at)
    returning * into granted;
    perform api.record_change(p_who, p_role, p_actor, 'consent-granted', p_actor,
        jsonb_build_object('consent', granted.id, 'partner', granted.partner_id,
                           'scopes', granted.scopes, 'expires_at', granted.expires_at), null);
    return next granted;
end
$$;

create function api.revoke_consent(p_who jsonb, p_role text, p_actor uuid, p_consent uuid)
    returns setof data.consents
    language plpgsql volatile
    as $$
declare
    revoked data.consents;
begin
    perform api.enter_scope(p_role, p_actor, null);
    update data.consents set revoked_at = now()
    where id = p_consent and p_role = 'patient' and patient_id = p_actor
      and revoked_at is null
    returning * into revoked;
    if revoked.id is not null then
        perform api.record_change(p_who, p_role, p_actor, 'consent-revoked', p_actor,
            jsonb_build_object('consent', revoked.id, 'partner', revoked.partner_id), null);
        return next revoked;
    end if;
end
$$;

create function api.consents_of(p_role text, p_actor uuid)
    returns table (consent data.consents, partner_name text)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, null);
    return query
        select k, pt.name from data.consents k join data.partners pt on pt.id = k.partner_id
        where p_role = 'patient' and k.patient_id = p_actor
        order by k.granted_at desc;
end
$$;

-- Break-glass, by a clinician: bounded in time by the caller (the gateway's maximum).
create function api.open_break_glass(
    p_who jsonb, p_role text, p_actor uuid, p_patient uuid, p_reason text, p_minutes integer
) returns setof data.break_glass_grants
    language plpgsql volatile
    as $$
declare
    opened data.break_glass_grants;
begin
    perform api.enter_scope(p_role, p_actor, null);
    if p_role <> 'clinician' then
        return;
    end if;
    insert into data.break_glass_grants (id, clinician_id, patient_id, reason, expires_at)
    values (gen_random_uuid(), p_actor, p_patient, btrim(p_reason),
            now() + make_interval(mins => p_minutes))
    returning * into opened;
    perform api.record_change(p_who, p_role, p_actor, 'break-glass-opened', p_patient,
        jsonb_build_object('grant', opened.id, 'expires_at', opened.expires_at), opened.reason);
    return next opened;
end
$$;

create function api.partners_by_id(p_ids uuid[])
    returns setof data.partners
    language sql stable
    as $$ select p.* from data.partners p where p.id = any(p_ids) $$;

create function api.all_partners()
    returns setof data.partners
    language sql stable
    as $$ select p.* from data.partners p order by p.name $$;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;

-- Changes of access are audited too.
alter table data.access_events drop constraint access_events_kind_check;
alter table data.access_events add constraint access_events_kind_check check (kind in (
    'disclosure', 'denial', 'alert', 'media', 'consent-granted', 'consent-revoked',
    'break-glass-opened'));
