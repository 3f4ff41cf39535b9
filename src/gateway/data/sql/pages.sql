-- The caller's lists, one statement per role inside each function: each role's predicate and
-- the grant its rows are seen under are written out (as api.grant_for gives them; partners keep
-- grant_for, for the consent's scopes), so that every statement has a plan of its own that can
-- use the index for its predicate. PL/pgSQL caches one plan per statement and connection: a
-- generic plan (plan_cache_mode = force_generic_plan), since no statement's predicate depends on
-- the role any more. (A single statement choosing its predicate by `case p_role` had to be
-- planned on every call, and for support's 500 rows planning cost more than running.)

create or replace function api.consultations_page(
    p_role text, p_actor uuid, p_scopes text[], p_limit integer, p_after_at timestamptz,
    p_after_id uuid
) returns table (
    consultation data.consultations, consent_scopes text[], break_glass_reason text, granted text
)
    language plpgsql volatile
    set plan_cache_mode = force_generic_plan
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    if p_role = 'patient' then
        return query
            select c, null::text[], null::text, 'own'::text
            from data.consultations c
            where c.patient_id = p_actor
              and (p_after_at is null or (c.scheduled_at, c.id) < (p_after_at, p_after_id))
            order by c.scheduled_at desc, c.id desc
            limit p_limit;
    elsif p_role = 'clinician' then
        return query
            select c, null::text[], null::text, 'conducted'::text
            from data.consultations c
            where c.clinician_id = p_actor
              and (p_after_at is null or (c.scheduled_at, c.id) < (p_after_at, p_after_id))
            order by c.scheduled_at desc, c.id desc
            limit p_limit;
    elsif p_role = 'support' then
        return query
            select c, null::text[], null::text, 'everyone'::text
            from data.consultations c
            where (p_after_at is null or (c.scheduled_at, c.id) < (p_after_at, p_after_id))
            order by c.scheduled_at desc, c.id desc
            limit p_limit;
    elsif p_role = 'partner' then
        return query
            select c, g.consent_scopes, g.break_glass_reason, g.granted
            from data.consultations c
            cross join lateral api.grant_for(p_role, p_actor, p_scopes, c.patient_id,
                                             c.clinician_id, 'patient/Consultation.rs') g
            where c.patient_id in (
                    select k.patient_id from data.consents k
                    where k.partner_id = p_actor and k.revoked_at is null
                      and now() < k.expires_at)
              and (p_after_at is null or (c.scheduled_at, c.id) < (p_after_at, p_after_id))
            order by c.scheduled_at desc, c.id desc
            limit p_limit;
    end if;
end
$$;

create or replace function api.access_events_page(
    p_role text, p_actor uuid, p_scopes text[], p_limit integer, p_before_seq bigint,
    p_by_others boolean default false, p_emergency boolean default false
) returns table (
    seq bigint, occurred_at timestamptz, kind text, subject text, role text, actor_id uuid,
    actor_name text, patient_id uuid, client_id text, break_glass_reason text, objects jsonb
)
    language plpgsql volatile
    set plan_cache_mode = force_generic_plan
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    -- One statement per view, its filter written as its index's predicate: under a generic plan
    -- (plan_cache_mode below) only a predicate in the statement's own text selects a partial
    -- index; a further filter on top of it (emergency and by others) keeps it usable.
    if p_role = 'patient' and p_emergency then
        return query
            select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id,
                   coalesce(c.display_name, pt.name), e.patient_id, e.client_id,
                   e.break_glass_reason, data.event_objects(e)
            from data.access_events e
            left join data.clinicians c on c.id = e.actor_id and e.role = 'clinician'
            left join data.partners pt on pt.id = e.actor_id and e.role = 'partner'
            where e.patient_id = p_actor
              and e.kind in ('disclosure', 'media', 'consent-granted', 'consent-revoked',
                             'break-glass-opened')
              and e.break_glass_reason is not null and e.seq is not null
              and (not p_by_others or e.role is distinct from 'patient')
              and (p_before_seq is null or e.seq < p_before_seq)
            order by e.seq desc
            limit p_limit;
    elsif p_role = 'patient' and p_by_others then
        return query
            select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id,
                   coalesce(c.display_name, pt.name), e.patient_id, e.client_id,
                   e.break_glass_reason, data.event_objects(e)
            from data.access_events e
            left join data.clinicians c on c.id = e.actor_id and e.role = 'clinician'
            left join data.partners pt on pt.id = e.actor_id and e.role = 'partner'
            where e.patient_id = p_actor
              and e.kind in ('disclosure', 'media', 'consent-granted', 'consent-revoked',
                             'break-glass-opened')
              and e.role is distinct from 'patient' and e.seq is not null
              and (p_before_seq is null or e.seq < p_before_seq)
            order by e.seq desc
            limit p_limit;
    elsif p_role = 'patient' then
        return query
            select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id,
                   coalesce(c.display_name, pt.name), e.patient_id, e.client_id,
                   e.break_glass_reason, data.event_objects(e)
            from data.access_events e
            left join data.clinicians c on c.id = e.actor_id and e.role = 'clinician'
            left join data.partners pt on pt.id = e.actor_id and e.role = 'partner'
            where e.patient_id = p_actor
              and e.kind in ('disclosure', 'media', 'consent-granted', 'consent-revoked',
                             'break-glass-opened')
              and e.seq is not null
              and (p_before_seq is null or e.seq < p_before_seq)
            order by e.seq desc
            limit p_limit;
    elsif p_role = 'auditor' then
        return query
            select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id,
                   coalesce(c.display_name, pt.name), e.patient_id, e.client_id,
                   e.break_glass_reason, data.event_objects(e)
            from data.access_events e
            left join data.clinicians c on c.id = e.actor_id and e.role = 'clinician'
            left join data.partners pt on pt.id = e.actor_id and e.role = 'partner'
            where e.seq is not null
              and (not p_by_others or e.role is distinct from 'patient')
              and (not p_emergency or e.break_glass_reason is not null)
              and (p_before_seq is null or e.seq < p_before_seq)
            order by e.seq desc
            limit p_limit;
    end if;
end
$$;
