-- A disclosure's objects stored compactly: the ids of its objects as one uuid[] (16 bytes each),
-- in groups of one type and one set of fields, the groups as [[type, [fields], count], ...]. A
-- page of fifty consultations with their recordings was about 20 KB of JSON text (one entry per
-- object) and 5.6 KB stored; now it is its ids and three groups. Objects whose keys are not
-- uuids (access events, by their sequence number) stay in `objects`, grouped as JSON. Events
-- written before keep their form: data.event_objects reads every form as grouped JSON, and the
-- chain hash of an event without object_ids is what it always was.

alter table data.access_events add column object_groups jsonb;
alter table data.access_events add column object_ids uuid[];

-- The hash covers the groups as text and the ids as their 16 bytes each, after every field it
-- covered before (gateway.audit.chain.event_hash computes the same without this function).
create or replace function data.access_event_chain_hash(prev bytea, e data.access_events)
    returns bytea
    language sql stable
    as $$
    select sha256(prev || convert_to(
        data.canonical_field(e.chain_id::text) || data.canonical_field(e.chain_seq::text)
        || data.canonical_field(e.seq::text)
        || data.canonical_field(to_char(e.occurred_at at time zone 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || data.canonical_field(e.request_id) || data.canonical_field(e.kind)
        || data.canonical_field(e.issuer) || data.canonical_field(e.subject)
        || data.canonical_field(e.role) || data.canonical_field(e.actor_id::text)
        || data.canonical_field(e.patient_id::text) || data.canonical_field(e.client_id)
        || data.canonical_field(e.break_glass_reason) || data.canonical_field(e.objects::text)
        || data.canonical_field(e.detail::text), 'UTF8')
        || case when e.object_ids is null then ''::bytea
           else convert_to(data.canonical_field(e.object_groups::text)
                           || (16 * cardinality(e.object_ids))::text || ':', 'UTF8')
                || decode(translate(array_to_string(e.object_ids, ''), '-', ''), 'hex')
           end)
$$;

-- An event's objects as JSON groups ({"type", "fields", "ids"}, or {"type", "id", "fields"} as
-- events before grouping were stored), whichever form the event was stored in.
create function data.event_objects(e data.access_events) returns jsonb
    language sql immutable
    as $$
    select case when e.object_ids is null then e.objects else e.objects || coalesce((
        select jsonb_agg(jsonb_build_object(
                   'type', g.item ->> 0, 'fields', g.item -> 1,
                   'ids', to_jsonb(e.object_ids[g.start + 1 : g.start + (g.item ->> 2)::integer]))
                 order by g.position)
        from (select item, position,
                     coalesce(sum((item ->> 2)::integer) over (
                         order by position rows between unbounded preceding and 1 preceding),
                         0) as start
              from jsonb_array_elements(e.object_groups) with ordinality as x(item, position)) g
    ), '[]'::jsonb) end
$$;

-- The events, and each one's ids taken from p_ids (ids_from, ids_count): the ids travel as one
-- binary uuid[] parameter instead of JSON text.
create function api.record_access_events(p_events jsonb, p_ids uuid[])
    returns void
    language sql volatile
    as $$
    insert into data.access_events
        (request_id, kind, issuer, subject, role, actor_id, patient_id, client_id,
         break_glass_reason, objects, object_groups, object_ids, detail)
    select e.request_id, e.kind, e.issuer, e.subject, e.role, e.actor_id, e.patient_id,
           e.client_id, e.break_glass_reason, coalesce(e.objects, '[]'), e.object_groups,
           case when e.object_groups is not null
                then coalesce(p_ids[e.ids_from + 1 : e.ids_from + e.ids_count], '{}') end,
           coalesce(e.detail, '{}')
    from jsonb_to_recordset(p_events) as e(
        request_id text, kind text, issuer text, subject text, role text, actor_id uuid,
        patient_id uuid, client_id text, break_glass_reason text, objects jsonb,
        object_groups jsonb, ids_from integer, ids_count integer, detail jsonb)
$$;

drop function api.record_access_events_if_authorized(text, uuid, text[], jsonb, jsonb);
create function api.record_access_events_if_authorized(
    p_role text, p_actor uuid, p_scopes text[], p_asks jsonb, p_events jsonb, p_ids uuid[]
) returns setof uuid
    language plpgsql volatile
    as $$
declare
    foreign_patients uuid[];
begin
    select array_agg(distinct candidate) into foreign_patients
      from jsonb_to_recordset(p_asks) as a(needs text, candidates uuid[])
     cross join lateral unnest(a.candidates) as candidate
     where candidate not in (
         select x from api.authorized_patients(p_role, p_actor, p_scopes, a.needs, a.candidates) x);
    if foreign_patients is not null then
        return query select unnest(foreign_patients);
        return;
    end if;
    perform api.record_access_events(p_events, p_ids);
end
$$;

-- The access log reads every form of objects.
create or replace function api.access_events_page(
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
              and (p_before_seq is null or e.seq < p_before_seq)
            order by e.seq desc
            limit p_limit;
    end if;
end
$$;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;

alter function api.access_events_page(text, uuid, text[], integer, bigint)
    set plan_cache_mode = force_generic_plan;
