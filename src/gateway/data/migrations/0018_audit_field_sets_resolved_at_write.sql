-- The audit write resolves its field sets itself. Until now the gateway sent the ids of the
-- field sets an event names, learnt once per process; after a restore to a point before a set
-- existed, its id could be given to another set and a remembered id would then name the wrong
-- type and fields, silently. Now the event carries its groups' names ([type, fields, count]) and
-- the write looks each set up (making it on first use) in the same statement, so the names
-- stored are the names sent. The groups are also checked where they are hashed: every set named
-- exists, counts are whole and add up to the ids stored, and an event has one form of groups.

-- A field set's id: looked up (one index probe), made only when missing.
create or replace function api.audit_field_set(p_type text, p_fields text[]) returns integer
    language plpgsql volatile security definer set search_path = pg_catalog, data
    as $$
declare
    found integer;
begin
    select id into found from data.audit_field_sets
     where type_name = p_type and fields = p_fields;
    if found is null then
        insert into data.audit_field_sets (type_name, fields) values (p_type, p_fields)
            on conflict (type_name, fields) do nothing returning id into found;
        if found is null then
            select id into found from data.audit_field_sets
             where type_name = p_type and fields = p_fields;
        end if;
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
         break_glass_reason, objects, object_sets, object_counts, object_ids, detail)
    select e.request_id, e.kind, e.issuer, e.subject, e.role, e.actor_id, e.patient_id,
           e.client_id, e.break_glass_reason, coalesce(e.objects, '[]'),
           (select array_agg(api.audit_field_set(
                       g.item ->> 0, array(select jsonb_array_elements_text(g.item -> 1)))
                   order by g.position)
              from jsonb_array_elements(e.object_groups) with ordinality as g(item, position)),
           (select array_agg((g.item ->> 2)::integer order by g.position)
              from jsonb_array_elements(e.object_groups) with ordinality as g(item, position)),
           case when e.object_groups is not null
                then coalesce(p_ids[e.ids_from + 1 : e.ids_from + e.ids_count], '{}') end,
           coalesce(e.detail, '{}')
    from jsonb_to_recordset(p_events) as e(
        request_id text, kind text, issuer text, subject text, role text, actor_id uuid,
        patient_id uuid, client_id text, break_glass_reason text, objects jsonb,
        object_groups jsonb, ids_from integer, ids_count integer, detail jsonb)
$$;

-- The groups' text, refused unless the event's groups are whole: every set exists, one count
-- per set, none null or negative, together exactly the ids stored.
create or replace function data.audit_groups_text(p_sets integer[], p_counts integer[])
    returns text
    language plpgsql stable security definer set search_path = pg_catalog, data
    as $$
declare
    resolved text;
    found integer;
begin
    if array_ndims(p_sets) > 1 or array_ndims(p_counts) > 1
       or coalesce(cardinality(p_sets), 0) <> coalesce(cardinality(p_counts), 0)
       or array_position(p_sets, null) is not null or array_position(p_counts, null) is not null
       or exists (select 1 from unnest(p_counts) c where c < 0) then
        raise exception 'an audit event''s groups are malformed';
    end if;
    select jsonb_agg(jsonb_build_array(f.type_name, to_jsonb(f.fields), p_counts[s.i])
                     order by s.i)::text, count(*)
      into resolved, found
      from unnest(p_sets) with ordinality as s(id, i)
      join data.audit_field_sets f on f.id = s.id;
    if found <> coalesce(cardinality(p_sets), 0) then
        raise exception 'an audit event names a field set that does not exist';
    end if;
    return resolved;
end
$$;

create function data.check_audit_groups() returns trigger
    language plpgsql
    as $$
begin
    if new.object_ids is not null and new.object_groups is null and new.object_sets is null then
        raise exception 'an audit event holds ids without their groups';
    end if;
    if new.object_groups is not null and new.object_sets is not null then
        raise exception 'an audit event holds its groups in two forms';
    end if;
    if new.object_sets is not null and (
        new.object_ids is null
        or (select coalesce(sum(c), 0) from unnest(new.object_counts) c)
           <> cardinality(new.object_ids)) then
        raise exception 'an audit event''s counts do not add up to its ids';
    end if;
    return new;
end
$$;

-- Before the chain trigger (triggers fire in name order): a malformed event is refused before
-- it takes a chain position.
create trigger access_events_a_groups_whole before insert on data.access_events
    for each row execute function data.check_audit_groups();

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
