-- The caller's lists, one statement per role.
--
-- consultations_page and access_events_page chose their predicate with `case p_role ...` and
-- joined api.grant_for to every row. Only a plan made for the actual role could use the index
-- for it, so 0007 planned them on every call: for support's 500 rows under row-level security
-- planning alone cost more than running. Now each role has a statement of its own inside the
-- function, with the predicate and the grant that role's rows are seen under written out (the
-- same as grant_for gives them: a patient's own rows `own`, a clinician's conducted ones
-- `conducted`, support `everyone`; partners keep grant_for, for the consent's scopes). PL/pgSQL
-- caches one plan per statement, so each is planned once per connection, for its role: a
-- generic plan, since each statement's predicate no longer depends on the role.

drop function api.consultations_page(text, uuid, text[], integer, timestamptz, uuid);
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

drop function api.access_events_page(text, uuid, text[], integer, bigint);
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
    if p_role = 'patient' then
        return query
            select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id,
                   coalesce(c.display_name, pt.name), e.patient_id, e.client_id,
                   e.break_glass_reason, e.objects
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
                   e.break_glass_reason, e.objects
            from data.access_events e
            left join data.clinicians c on c.id = e.actor_id and e.role = 'clinician'
            left join data.partners pt on pt.id = e.actor_id and e.role = 'partner'
            where e.seq is not null
              and (p_before_seq is null or e.seq < p_before_seq)
            order by e.seq desc
            limit p_limit;
    end if;
end
$$;

alter function api.consultations_page(text, uuid, text[], integer, timestamptz, uuid)
    set plan_cache_mode = force_generic_plan;
alter function api.access_events_page(text, uuid, text[], integer, bigint)
    set plan_cache_mode = force_generic_plan;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
