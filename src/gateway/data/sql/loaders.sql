-- The by-id loaders the resolvers batch through (gateway.data.loaders). Each enters the caller's
-- scope, returns only rows the caller may see, and says beside each row under which grant it was
-- seen (visibility.sql), so that a row reaching a resolver without a grant for this caller is
-- refused by the field check on its own, not only by row-level security and the exit check.
--
-- They find rows by `id = any(p_ids)` (or the patient or consultation key): one generic plan
-- serves every call (plan_cache_mode = force_generic_plan).
--
-- The recording loaders left-join the consultation: a partner holding patient/Recording.rs but not
-- patient/Consultation.rs sees no consultation (its row-level security), yet may see the
-- recordings; the owner is read from the segment itself (equal to the consultation's by the
-- composite foreign key), and where the consultation is hidden its clinician is null, which
-- admits nobody as conducting.

create or replace function api.patients_by_id(p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
    returns table (
        patient data.patients, consent_scopes text[], break_glass_reason text, granted text
    )
    language plpgsql volatile
    set plan_cache_mode = force_generic_plan
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

create or replace function api.clinicians_by_id(p_ids uuid[])
    returns setof data.clinicians
    language sql stable
    as $$ select c.* from data.clinicians c where c.id = any(p_ids) $$;

create or replace function api.partners_by_id(p_ids uuid[])
    returns setof data.partners
    language sql stable
    as $$ select p.* from data.partners p where p.id = any(p_ids) $$;

create or replace function api.consultations_by_id(p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
    returns table (
        consultation data.consultations, consent_scopes text[], break_glass_reason text,
        granted text
    )
    language plpgsql volatile
    set plan_cache_mode = force_generic_plan
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

create or replace function api.consultations_by_patient(
    p_role text, p_actor uuid, p_scopes text[], p_patients uuid[]
) returns table (
    consultation data.consultations, consent_scopes text[], break_glass_reason text, granted text
)
    language plpgsql volatile
    set plan_cache_mode = force_generic_plan
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

create or replace function api.recordings_by_consultation(
    p_role text, p_actor uuid, p_scopes text[], p_ids uuid[]
) returns table (
    recording data.recordings, consent_scopes text[], break_glass_reason text, granted text
)
    language plpgsql volatile
    set plan_cache_mode = force_generic_plan
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select r, g.consent_scopes, g.break_glass_reason, g.granted
        from data.recordings r
        left join data.consultations c on c.id = r.consultation_id
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, r.patient_id, c.clinician_id,
                                         'patient/Recording.rs') g
        where r.consultation_id = any(p_ids)
        order by r.consultation_id, r.segment_index;
end
$$;

create or replace function api.recordings_by_id(
    p_role text, p_actor uuid, p_scopes text[], p_ids uuid[]
) returns table (
    recording data.recordings, consent_scopes text[], break_glass_reason text, granted text
)
    language plpgsql volatile
    set plan_cache_mode = force_generic_plan
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    return query
        select r, g.consent_scopes, g.break_glass_reason, g.granted
        from data.recordings r
        left join data.consultations c on c.id = r.consultation_id
        cross join lateral api.grant_for(p_role, p_actor, p_scopes, r.patient_id, c.clinician_id,
                                         'patient/Recording.rs') g
        where r.id = any(p_ids);
end
$$;
