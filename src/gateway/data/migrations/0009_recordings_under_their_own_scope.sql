-- A partner whose token and consent hold patient/Recording.rs but not patient/Consultation.rs
-- got no recording (and no playback), though the policy table (Recording rows: consented, under
-- patient/Recording.rs), api.grant_for, the recordings' own row-level security policy and the
-- exit check all admit them: both recording functions inner-joined data.consultations for the
-- conducting clinician, and that table's row-level security hides every consultation from such a
-- partner, so the join dropped every segment. The consultation is now left-joined and the owner
-- read from the segment itself (equal to the consultation's by the composite foreign key). Where
-- the consultation is hidden its clinician is null, which admits nobody as "conducting"; and a
-- patient's or clinician's segment stays visible exactly when its consultation is
-- (recording_rows), so only a partner's reach changes. Plan cache modes as in 0007.

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
