-- The audit trail's write and its guarantees. Every disclosure is recorded before it is sent
-- (api.record_access_events, or api.record_access_events_if_authorized, which re-checks the
-- grant in the same statement); events are append-only (triggers refuse update, delete and
-- truncate, even to the owner) and tamper-evident: each event joins one of the hash chains of
-- data.audit_chains (so that writers never wait for each other), its hash covering its
-- predecessor's; `gateway audit verify` recomputes them independently (gateway.audit.chain).
-- Objects are stored compactly: their uuids as one array, in groups of one type and one field
-- set (data.audit_field_sets), resolved by name in the same statement that writes the event.

-- The canonical text of an event, hashed with its predecessor's hash: every field as
-- "<length>:<text>", or "N" for null, concatenated; no separator or null can be confused with
-- content.
create or replace function data.canonical_field(value text) returns text
    language sql immutable
    as $$ select coalesce(length(value)::text || ':' || value, 'N') $$;

create or replace function data.refuse_audit_change() returns trigger
    language plpgsql
    as $$
begin
    raise exception 'access_events is append-only' using errcode = 'insufficient_privilege';
end
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

-- The transaction's chain and its tail travel in transaction-local settings: the first event
-- takes a chain, the next ones continue it, the statement trigger stores the tail in the head.
create or replace function data.chain_access_event() returns trigger
    language plpgsql security definer set search_path = pg_catalog, data
    as $$
declare
    chain integer := nullif(current_setting('gateway.audit_chain', true), '')::integer;
    prev_seq bigint;
    prev_hash bytea;
    tail text;
    any_chain integer;
begin
    if chain is null then
        select c.id, c.last_seq, c.last_hash into chain, prev_seq, prev_hash
          from data.audit_chains c
         order by random()
         limit 1
           for update skip locked;
        if chain is null then  -- every chain is being written: wait for one
            any_chain := 1 + floor(random() * 32)::integer;
            select c.id, c.last_seq, c.last_hash into chain, prev_seq, prev_hash
              from data.audit_chains c
             where c.id = any_chain
               for update;
        end if;
        perform set_config('gateway.audit_chain', chain::text, true);
    else
        tail := current_setting('gateway.audit_tail');
        prev_seq := split_part(tail, ':', 1)::bigint;
        prev_hash := decode(split_part(tail, ':', 2), 'hex');
    end if;
    new.occurred_at := now();
    new.seq := nextval('data.access_event_seq');
    new.chain_id := chain;
    new.chain_seq := prev_seq + 1;
    new.prev_hash := prev_hash;
    new.hash := data.access_event_chain_hash(prev_hash, new);
    perform set_config('gateway.audit_tail', new.chain_seq || ':' || encode(new.hash, 'hex'), true);
    return new;
end
$$;

create or replace function data.advance_chain_head() returns trigger
    language plpgsql security definer set search_path = pg_catalog, data
    as $$
declare
    chain integer := nullif(current_setting('gateway.audit_chain', true), '')::integer;
    tail text := current_setting('gateway.audit_tail', true);
begin
    if chain is not null and tail is not null and tail <> '' then
        update data.audit_chains
           set last_seq = split_part(tail, ':', 1)::bigint,
               last_hash = decode(split_part(tail, ':', 2), 'hex')
         where id = chain;
    end if;
    return null;
end
$$;

create or replace function data.check_audit_groups() returns trigger
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

create or replace function api.record_access_events_if_authorized(
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

create or replace trigger access_events_chain before insert on data.access_events
    for each row execute function data.chain_access_event();

create or replace trigger access_events_append_only before update or delete on data.access_events
    for each row execute function data.refuse_audit_change();

create or replace trigger access_events_no_truncate before truncate on data.access_events
    for each statement execute function data.refuse_audit_change();

create or replace trigger access_events_chain_head after insert on data.access_events
    for each statement execute function data.advance_chain_head();

-- Before the chain trigger (triggers fire in name order): a malformed event is refused before
-- it takes a chain position.
create or replace trigger access_events_a_groups_whole before insert on data.access_events
    for each row execute function data.check_audit_groups();

create or replace trigger audit_field_sets_append_only before update or delete on data.audit_field_sets
    for each row execute function data.refuse_audit_change();

create or replace trigger audit_field_sets_no_truncate before truncate on data.audit_field_sets
    for each statement execute function data.refuse_audit_change();

-- The monthly partitions of data.access_events (migration 0021), made ahead: this month's and
-- the next p_months_ahead (at most 24), each where it is missing. A partition is made as a table
-- of its own and then attached, which takes SHARE UPDATE EXCLUSIVE on the trail (writers and
-- readers go on) rather than the ACCESS EXCLUSIVE a CREATE TABLE ... PARTITION OF takes; a lock
-- not granted within a second gives up (the next run makes it). Runs as the owner: the migrate
-- calls it, and so does the nightly CronJob as the audit reader, which may call nothing else
-- that writes. Returns the partitions made.
create or replace function data.create_access_event_partitions(p_months_ahead integer default 3)
    returns setof text
    language plpgsql volatile security definer
    set search_path = pg_catalog, data, pg_temp
    set lock_timeout = '1s'
    as $$
declare
    month timestamptz := date_trunc('month', now() at time zone 'UTC') at time zone 'UTC';
    next_month timestamptz;
    name text;
begin
    if p_months_ahead is null or p_months_ahead < 0 or p_months_ahead > 24 then
        raise exception 'months ahead must be between 0 and 24, not %', p_months_ahead
            using errcode = 'invalid_parameter_value';
    end if;
    for i in 0 .. p_months_ahead loop
        next_month := (month at time zone 'UTC' + interval '1 month') at time zone 'UTC';
        name := 'access_events_' || to_char(month at time zone 'UTC', 'YYYY_MM');
        if not exists (
            select from pg_inherits i
            join pg_class c on c.oid = i.inhrelid
            join pg_namespace n on n.oid = c.relnamespace
            where i.inhparent = 'data.access_events'::regclass
              and n.nspname = 'audit_partitions' and c.relname = name
        ) and not exists (
            select from data.audit_archives a where a.partition_name = name
        ) then
            execute format('create table audit_partitions.%I (like data.access_events '
                           'including defaults including constraints)', name);
            execute format('alter table data.access_events attach partition audit_partitions.%I '
                           'for values from (%L) to (%L)', name, month, next_month);
            return next name;
        end if;
        month := next_month;
    end loop;
    -- A month's own truncate is refused too: statement triggers are not passed on to the
    -- partitions (row triggers are: update and delete are refused in every month).
    for name in
        select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'data.access_events'::regclass
          and not exists (select from pg_trigger t
                          where t.tgrelid = c.oid and t.tgname = 'access_events_no_truncate')
    loop
        execute format('create trigger access_events_no_truncate before truncate on '
                       'audit_partitions.%I for each statement '
                       'execute function data.refuse_audit_change()', name);
    end loop;
end
$$;

-- A verification's checkpoint: the last position of a chain it found intact (chain 0: the
-- events before the chains, by seq). Refused unless that position holds that hash, in the
-- trail or at the end of an archived run, so that a checkpoint can only name a real event; and
-- refused behind the chain's furthest checkpoint, so that a checkpoint only moves forward. Each
-- is a row of its own (who recorded it, when), never changed: `gateway audit verify --full`
-- holds every one against the events it passes, and the archive against the month it archives.
-- The nightly verify (as the audit reader) records them; the next one starts at the furthest.
create or replace function data.record_audit_checkpoint(
    p_chain integer, p_position bigint, p_hash bytea
) returns void
    language plpgsql volatile security definer
    set search_path = pg_catalog, data, pg_temp
    as $$
declare
    month text;
    furthest bigint;
    found boolean := exists (
        select from data.audit_archives a, jsonb_array_elements(a.runs) r
        where (r ->> 'chain')::integer = p_chain and (r ->> 'last')::bigint = p_position
          and r ->> 'hash' = encode(p_hash, 'hex'));
begin
    -- One checkpoint of a chain at a time, so that two verifications cannot pass each other.
    perform pg_advisory_xact_lock(hashtext('data.audit_checkpoints'), p_chain);
    select max(chain_seq) into furthest from data.audit_checkpoints where chain_id = p_chain;
    if furthest is not null and p_position < furthest then
        raise exception 'chain % is checked to position %: a checkpoint only moves forward',
            p_chain, furthest using errcode = 'invalid_parameter_value';
    end if;
    if furthest = p_position and not exists (
        select from data.audit_checkpoints
        where chain_id = p_chain and chain_seq = p_position and hash = p_hash) then
        raise exception 'chain % position % differs from its checkpoint', p_chain, p_position
            using errcode = 'invalid_parameter_value';
    end if;
    -- The months themselves, not the trail: the trail forces row-level security, which binds
    -- this function (its owner has no policy); the months do not, and only their owner reads
    -- them.
    for month in
        select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'data.access_events'::regclass
    loop
        exit when found;
        execute format(
            'select exists (select from audit_partitions.%I e where '
            '(e.chain_id = $1 and e.chain_seq = $2 and e.hash = $3) or '
            '($1 = 0 and e.chain_id is null and e.seq = $2 and e.hash = $3))', month)
            into found using p_chain, p_position, p_hash;
    end loop;
    if not found then
        raise exception 'no event at chain % position % has that hash', p_chain, p_position
            using errcode = 'invalid_parameter_value';
    end if;
    if furthest is distinct from p_position then
        insert into data.audit_checkpoints (chain_id, chain_seq, hash)
        values (p_chain, p_position, p_hash);
    end if;
end
$$;

-- A checkpoint is never changed or removed (migration 0022).
create or replace function data.refuse_checkpoint_change() returns trigger
    language plpgsql
    as $$
begin
    raise exception 'audit_checkpoints is append-only' using errcode = 'insufficient_privilege';
end
$$;

create or replace trigger audit_checkpoints_append_only
    before update or delete on data.audit_checkpoints
    for each row execute function data.refuse_checkpoint_change();

create or replace trigger audit_checkpoints_no_truncate before truncate on data.audit_checkpoints
    for each statement execute function data.refuse_checkpoint_change();

-- An archive's row is written once; only its deletion (retention) may be recorded after.
create or replace function data.refuse_archive_change() returns trigger
    language plpgsql
    as $$
begin
    if tg_op = 'UPDATE' then
        if old.deleted_at is null and new.deleted_at is not null
           and (to_jsonb(new) - 'deleted_at') = (to_jsonb(old) - 'deleted_at') then
            return new;
        end if;
    end if;
    raise exception 'audit_archives is append-only' using errcode = 'insufficient_privilege';
end
$$;

create or replace trigger audit_archives_append_only before update or delete on data.audit_archives
    for each row execute function data.refuse_archive_change();

create or replace trigger audit_archives_no_truncate before truncate on data.audit_archives
    for each statement execute function data.refuse_archive_change();
