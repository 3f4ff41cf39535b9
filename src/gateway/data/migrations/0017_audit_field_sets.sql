-- A disclosure's groups by reference: each distinct (type, set of fields) is stored once, in
-- data.audit_field_sets, and an event holds the ids of its groups' field sets (object_sets) and
-- how many of its object_ids each covers (object_counts) instead of the names themselves. The
-- record of a patient's replays page shrinks by the names' 250 bytes or so, to its ids and a
-- few integers. The chain hash covers the same text as before (the groups as
-- [[type, fields, count], ...], read from the field sets), so changing a field set afterwards
-- breaks every event that refers to it, and an event naming a set that does not exist is
-- refused when it is written. Events written in 0016's form (object_groups) keep it.

create table data.audit_field_sets (
    id integer generated always as identity primary key,
    type_name text not null,
    fields text[] not null,
    unique (type_name, fields)
);
create trigger audit_field_sets_append_only before update or delete on data.audit_field_sets
    for each row execute function data.refuse_audit_change();
create trigger audit_field_sets_no_truncate before truncate on data.audit_field_sets
    for each statement execute function data.refuse_audit_change();
revoke all on data.audit_field_sets from gateway_app;
grant select on data.audit_field_sets to gateway_app;  -- field names, for the access log

alter table data.access_events add column object_sets integer[];
alter table data.access_events add column object_counts integer[];

-- The groups of an event stored by reference, as the text 0016's object_groups would hold;
-- an error when a set is missing (the record would otherwise lose what it says was read).
create function data.audit_groups_text(p_sets integer[], p_counts integer[]) returns text
    language plpgsql stable security definer set search_path = pg_catalog, data
    as $$
declare
    resolved text;
    found integer;
begin
    select jsonb_agg(jsonb_build_array(f.type_name, to_jsonb(f.fields), p_counts[s.i])
                     order by s.i)::text, count(*)
      into resolved, found
      from unnest(p_sets) with ordinality as s(id, i)
      join data.audit_field_sets f on f.id = s.id;
    if found <> coalesce(cardinality(p_sets), 0)
       or coalesce(cardinality(p_sets), 0) <> coalesce(cardinality(p_counts), 0) then
        raise exception 'an audit event names a field set that does not exist';
    end if;
    return resolved;
end
$$;

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
           else convert_to(data.canonical_field(coalesce(
                               e.object_groups::text,
                               data.audit_groups_text(e.object_sets, e.object_counts)))
                           || (16 * cardinality(e.object_ids))::text || ':', 'UTF8')
                || decode(translate(array_to_string(e.object_ids, ''), '-', ''), 'hex')
           end)
$$;

create or replace function data.event_objects(e data.access_events) returns jsonb
    language sql stable
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
              from jsonb_array_elements(coalesce(
                       e.object_groups,
                       data.audit_groups_text(e.object_sets, e.object_counts)::jsonb))
                   with ordinality as x(item, position)) g
    ), '[]'::jsonb) end
$$;

-- The id of a field set, made on first use (the writer remembers it).
create function api.audit_field_set(p_type text, p_fields text[]) returns integer
    language plpgsql volatile security definer set search_path = pg_catalog, data
    as $$
declare
    found integer;
begin
    insert into data.audit_field_sets (type_name, fields) values (p_type, p_fields)
        on conflict (type_name, fields) do nothing returning id into found;
    if found is null then
        select id into found from data.audit_field_sets
         where type_name = p_type and fields = p_fields;
    end if;
    return found;
end
$$;

create or replace function api.record_access_events(p_events jsonb, p_ids uuid[])
    returns void
    language sql volatile
    as $$
    insert into data.access_events
        (request_id, kind, issuer, subject, role, actor_id, patient_id, client_id,
         break_glass_reason, objects, object_groups, object_sets, object_counts, object_ids,
         detail)
    select e.request_id, e.kind, e.issuer, e.subject, e.role, e.actor_id, e.patient_id,
           e.client_id, e.break_glass_reason, coalesce(e.objects, '[]'), e.object_groups,
           e.object_sets, e.object_counts,
           case when e.object_groups is not null or e.object_sets is not null
                then coalesce(p_ids[e.ids_from + 1 : e.ids_from + e.ids_count], '{}') end,
           coalesce(e.detail, '{}')
    from jsonb_to_recordset(p_events) as e(
        request_id text, kind text, issuer text, subject text, role text, actor_id uuid,
        patient_id uuid, client_id text, break_glass_reason text, objects jsonb,
        object_groups jsonb, object_sets integer[], object_counts integer[], ids_from integer,
        ids_count integer, detail jsonb)
$$;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
