-- Every row a loader function returns says under which grant it was seen: `own` (the patient's
-- own), `conducted` (a clinician's own consultation, or its patient and recordings),
-- `break-glass`, `everyone` (support) or `consent` (a partner). Layer 1 checks it against the
-- caller's row scope in the policy table before any field of the row is read, so a row that
-- reached a resolver without a grant for this caller (a loader that forgot its predicate) is
-- refused by the field check on its own, not only by row-level security and the exit check.
--
-- The functions are redefined with one more output column; their plan cache modes (0007) are
-- set again, since a new function starts without them.

drop function api.consultations_by_id(text, uuid, text[], uuid[]);
drop function api.consultations_page(text, uuid, text[], integer, timestamptz, uuid);
drop function api.consultations_by_patient(text, uuid, text[], uuid[]);
drop function api.recordings_by_consultation(text, uuid, text[], uuid[]);
drop function api.recordings_by_id(text, uuid, text[], uuid[]);
drop function api.patients_by_id(text, uuid, text[], uuid[]);
drop function api.grant_for(text, uuid, text[], uuid, uuid, text);

-- The grant under which a caller sees one patient's row of a type that needs p_needs (a SMART
-- scope). No row: not visible. Parameters only; no settings read.
create function api.grant_for(
    p_role text, p_actor uuid, p_scopes text[], p_patient uuid, p_clinician uuid, p_needs text
) returns table (consent_scopes text[], break_glass_reason text, granted text)
    language sql stable
    as $$
    select x.consent_scopes, x.break_glass_reason, x.granted from (
        select 1 as priority, null::text[] as consent_scopes, null::text as break_glass_reason,
               'own'::text as granted
        where p_role = 'patient' and p_patient = p_actor
        union all
        select 1, null, null, 'conducted'
        where p_role = 'clinician' and p_clinician = p_actor
        union all
        select 2, null, g.reason, 'break-glass'
        from data.break_glass_grants g
        where p_role = 'clinician' and g.clinician_id = p_actor and g.patient_id = p_patient
          and g.revoked_at is null and now() < g.expires_at
        union all
        select 1, null, null, 'everyone'
        where p_role = 'support' and p_needs in ('patient/Consultation.rs', 'patient/Patient.rs')
        union all
        select 1, array(select s from unnest(k.scopes) s where s = any(p_scopes) order by s), null,
               'consent'
        from data.consents k
        where p_role = 'partner' and k.partner_id = p_actor and k.patient_id = p_patient
          and k.revoked_at is null and now() < k.expires_at
          and p_needs = any(k.scopes) and p_needs = any(p_scopes)
    ) x
    order by x.priority
    limit 1
$$;

create function api.consultations_by_id(p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
    returns table (
        consultation data.consultations, consent_scopes text[], break_glass_reason text,
        granted text
    )
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select c, g.consent_scopes, g.break_glass_reason, g.granted
        from data.consultations c
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Consultation.rs') g
        where c.id = any(p_ids);
end
$$;

create function api.consultations_page(
    p_role text, p_actor uuid, p_scopes text[], p_limit integer, p_after_at timestamptz,
    p_after_id uuid
) returns table (
    consultation data.consultations, consent_scopes text[], break_glass_reason text, granted text
)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select c, g.consent_scopes, g.break_glass_reason, g.granted
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

create function api.consultations_by_patient(
    p_role text, p_actor uuid, p_scopes text[], p_patients uuid[]
) returns table (
    consultation data.consultations, consent_scopes text[], break_glass_reason text, granted text
)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select c, g.consent_scopes, g.break_glass_reason, g.granted
        from data.consultations c
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Consultation.rs') g
        where c.patient_id = any(p_patients)
        order by c.patient_id, c.scheduled_at desc, c.id desc;
end
$$;

create function api.recordings_by_consultation(
    p_role text, p_actor uuid, p_scopes text[], p_ids uuid[]
) returns table (
    recording data.recordings, consent_scopes text[], break_glass_reason text, granted text
)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select r, g.consent_scopes, g.break_glass_reason, g.granted
        from data.recordings r
        join data.consultations c on c.id = r.consultation_id
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Recording.rs') g
        where r.consultation_id = any(p_ids)
        order by r.consultation_id, r.segment_index;
end
$$;

create function api.recordings_by_id(p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
    returns table (
        recording data.recordings, consent_scopes text[], break_glass_reason text, granted text
    )
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select r, g.consent_scopes, g.break_glass_reason, g.granted
        from data.recordings r
        join data.consultations c on c.id = r.consultation_id
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id, c.clinician_id,
                                         'patient/Recording.rs') g
        where r.id = any(p_ids);
end
$$;

create function api.patients_by_id(p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
    returns table (
        patient data.patients, consent_scopes text[], break_glass_reason text, granted text
    )
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select p, g.consent_scopes, g.break_glass_reason, g.granted
        from data.patients p
        cross join lateral (
            select x.consent_scopes, x.break_glass_reason, x.granted from (
                select 2 as priority, a.consent_scopes, a.break_glass_reason, a.granted
                from api.grant_for(p_role, p_actor, p_scopes, p.id, null, 'patient/Patient.rs') a
                union all
                select 1, null, null, 'conducted'
                where p_role = 'clinician' and exists (
                    select 1 from data.consultations c
                    where c.patient_id = p.id and c.clinician_id = p_actor)
            ) x order by x.priority limit 1
        ) g
        where p.id = any(p_ids);
end
$$;

alter function api.consultations_page(text, uuid, text[], integer, timestamptz, uuid)
    set plan_cache_mode = force_custom_plan;
alter function api.consultations_by_id(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
alter function api.consultations_by_patient(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
alter function api.recordings_by_consultation(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
alter function api.recordings_by_id(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
alter function api.patients_by_id(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
