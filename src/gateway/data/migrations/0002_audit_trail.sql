-- The audit trail of every disclosure: one event per (request, patient, kind), listing the objects
-- and fields disclosed; append-only for the application role and tamper-evident through a hash
-- chain kept by a trigger the application role cannot bypass.

alter table data.access_events drop column object_type;
alter table data.access_events drop column object_id;
alter table data.access_events drop column fields;
alter table data.access_events drop constraint access_events_kind_check;
alter table data.access_events add constraint access_events_kind_check
    check (kind in ('disclosure', 'denial', 'alert', 'media'));
alter table data.access_events add column client_id text;
alter table data.access_events add column break_glass_reason text;
-- [{"type": "Consultation", "id": "<uuid>", "fields": ["reason", ...]}, ...]
alter table data.access_events add column objects jsonb not null default '[]';
alter table data.access_events add column seq bigint unique;
alter table data.access_events add column prev_hash bytea;
alter table data.access_events add column hash bytea;

create table data.audit_chain_head (
    id integer primary key check (id = 1),
    last_seq bigint not null,
    last_hash bytea not null
);
insert into data.audit_chain_head values (1, 0, sha256(convert_to('consultation-gateway audit', 'UTF8')));
-- (the genesis hash above is the prev_hash of event seq 1)

-- The canonical text of an event, hashed with its predecessor's hash: every field as
-- "<length>:<text>", or "N" for null, concatenated; no separator or null can be confused with
-- content.
create function data.canonical_field(value text) returns text
    language sql immutable
    as $$ select coalesce(length(value)::text || ':' || value, 'N') $$;

create function data.access_event_hash(prev bytea, e data.access_events) returns bytea
    language sql stable
    as $$
    select sha256(prev || convert_to(
        data.canonical_field(e.seq::text)
        || data.canonical_field(to_char(e.occurred_at at time zone 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || data.canonical_field(e.request_id) || data.canonical_field(e.kind)
        || data.canonical_field(e.issuer) || data.canonical_field(e.subject)
        || data.canonical_field(e.role) || data.canonical_field(e.actor_id::text)
        || data.canonical_field(e.patient_id::text) || data.canonical_field(e.client_id)
        || data.canonical_field(e.break_glass_reason) || data.canonical_field(e.objects::text)
        || data.canonical_field(e.detail::text), 'UTF8'))
$$;

create function data.chain_access_event() returns trigger
    language plpgsql security definer set search_path = pg_catalog, data
    as $$
declare
    head data.audit_chain_head;
begin
    -- The head row lock serializes appends across every gateway replica.
    select * into head from data.audit_chain_head where id = 1 for update;
    new.occurred_at := now();
    new.seq := head.last_seq + 1;
    new.prev_hash := head.last_hash;
    new.hash := data.access_event_hash(head.last_hash, new);
    update data.audit_chain_head set last_seq = new.seq, last_hash = new.hash where id = 1;
    return new;
end
$$;

create trigger access_events_chain before insert on data.access_events
    for each row execute function data.chain_access_event();

create function data.refuse_audit_change() returns trigger
    language plpgsql
    as $$
begin
    raise exception 'access_events is append-only' using errcode = 'insufficient_privilege';
end
$$;

create trigger access_events_append_only before update or delete on data.access_events
    for each row execute function data.refuse_audit_change();
create trigger access_events_no_truncate before truncate on data.access_events
    for each statement execute function data.refuse_audit_change();

revoke all on data.audit_chain_head from gateway_app;
revoke update, delete, truncate on data.access_events from gateway_app;

create index access_events_by_seq on data.access_events (patient_id, seq desc);

drop function api.record_access_events(jsonb);
create function api.record_access_events(p_events jsonb)
    returns void
    language sql volatile
    as $$
    insert into data.access_events
        (request_id, kind, issuer, subject, role, actor_id, patient_id, client_id,
         break_glass_reason, objects, detail)
    select e.request_id, e.kind, e.issuer, e.subject, e.role, e.actor_id, e.patient_id,
           e.client_id, e.break_glass_reason, coalesce(e.objects, '[]'), coalesce(e.detail, '{}')
    from jsonb_to_recordset(p_events) as e(
        request_id text, kind text, issuer text, subject text, role text, actor_id uuid,
        patient_id uuid, client_id text, break_glass_reason text, objects jsonb, detail jsonb)
$$;

-- A patient's own access log (RLS: access_event_rows), newest first, keyset on seq.
create function api.access_events_page(
    p_role text, p_actor uuid, p_limit integer, p_before_seq bigint
) returns table (
    seq bigint, occurred_at timestamptz, kind text, subject text, role text, actor_id uuid,
    actor_name text, patient_id uuid, client_id text, break_glass_reason text, objects jsonb
)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor);
    if p_role = 'patient' then
        return query
            select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id,
                   c.display_name, e.patient_id, e.client_id, e.break_glass_reason, e.objects
            from data.access_events e
            left join data.clinicians c on c.id = e.actor_id and e.role = 'clinician'
            where e.patient_id = p_actor
              and e.kind in ('disclosure', 'media')
              and (p_before_seq is null or e.seq < p_before_seq)
            order by e.seq desc
            limit p_limit;
    end if;
end
$$;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
