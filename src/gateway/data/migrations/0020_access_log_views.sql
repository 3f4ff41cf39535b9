-- The patient's access log as a patient reads it (issue 24): others' accesses apart from the
-- patient's own reads, and emergency (break-glass) accesses on their own, each a page by seq.
--
-- access_events_page gains two filters, false by default (the page as before): p_by_others keeps
-- the events of anyone but a patient (on a patient's log: anyone but the patient), p_emergency
-- the events that carry a break-glass reason. Each has a partial index of the patient's events
-- it keeps, newest first, and a statement of its own that the index serves, so that a page of
-- them does not walk past the patient's own reads (tests/test_access_log_views.py counts the
-- index scans). A patient's own read matches neither predicate: the indexes cost nothing on
-- that path. The auditor's statement takes the same filters (no index: it reads every patient).

create index access_events_by_others on data.access_events (patient_id, seq desc)
    where role is distinct from 'patient' and seq is not null;
create index access_events_emergency on data.access_events (patient_id, seq desc)
    where break_glass_reason is not null and seq is not null;

drop function api.access_events_page(text, uuid, text[], integer, bigint);
create function api.access_events_page(
    p_role text, p_actor uuid, p_scopes text[], p_limit integer, p_before_seq bigint,
    p_by_others boolean default false, p_emergency boolean default false
) returns table (
    seq bigint, occurred_at timestamptz, kind text, subject text, role text, actor_id uuid,
    actor_name text, patient_id uuid, client_id text, break_glass_reason text, objects jsonb
)
    language plpgsql volatile
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

alter function api.access_events_page(text, uuid, text[], integer, bigint, boolean, boolean)
    set plan_cache_mode = force_generic_plan;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
