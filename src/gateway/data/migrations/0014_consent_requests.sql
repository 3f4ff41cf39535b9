-- The consent page (docs/PARTNERS.md): a partner sends a patient to /app/consent with its id, the
-- SMART scopes it asks for, a redirect URI and a state. The page opens a consent request (checked
-- here against the partner's registration: enabled, the redirect URI registered, each scope one
-- it may ask for), shows it, and the patient answers it once, within fifteen minutes: approving
-- grants exactly the scopes asked for (api.grant_consent, with its audit event), declining
-- grants nothing. A request is the patient's own row; nobody else reads or answers it.
-- Refusals a person should read are raised with SQLSTATE GW400 (the gateway's bad input).

create table data.consent_requests (
    id uuid primary key,
    patient_id uuid not null references data.patients,
    partner_id uuid not null references data.partners,
    scopes text[] not null check (cardinality(scopes) > 0),
    redirect_uri text not null,
    state text not null check (length(state) between 1 and 512),
    consent_expires_at timestamptz not null,
    opened_at timestamptz not null default now(),
    valid_until timestamptz not null,
    answered_at timestamptz,
    approved boolean,
    consent_id uuid references data.consents,
    -- The one-time code an approval sends the partner (its SHA-256 only): the partner redeems it
    -- with its own token for the patient who answered (api.redeem_consent_code).
    code_digest bytea unique,
    code_expires_at timestamptz,
    code_redeemed_at timestamptz,
    check ((answered_at is null) = (approved is null)),
    check ((code_digest is null) = (approved is not true)),
    check ((code_digest is null) = (code_expires_at is null)),
    check (approved is not true or consent_id is not null)
);
create index consent_requests_by_patient on data.consent_requests (patient_id);

alter table data.consent_requests enable row level security;
alter table data.consent_requests force row level security;
create policy consent_request_rows on data.consent_requests for select to gateway_app using (
    api.scope_role() = 'patient' and patient_id = api.scope_actor()
);
create policy consent_request_open on data.consent_requests for insert to gateway_app
    with check (api.scope_role() = 'patient' and patient_id = api.scope_actor());
create policy consent_request_answer on data.consent_requests for update to gateway_app
    using (api.scope_role() = 'patient' and patient_id = api.scope_actor())
    with check (api.scope_role() = 'patient' and patient_id = api.scope_actor());
-- The partner sees its approved requests while their code lives (ten minutes; the row stays
-- visible once redeemed, as the redemption's own update must read it back), nothing else.
create policy consent_request_partner_rows on data.consent_requests for select to gateway_app
    using (api.scope_role() = 'partner' and partner_id = api.scope_actor() and approved
           and now() < code_expires_at);
create policy consent_request_redeem on data.consent_requests for update to gateway_app
    using (api.scope_role() = 'partner' and partner_id = api.scope_actor() and approved
           and code_redeemed_at is null and now() < code_expires_at)
    with check (api.scope_role() = 'partner' and partner_id = api.scope_actor());
grant select, insert on data.consent_requests to gateway_app;
grant update (answered_at, approved, consent_id, code_digest, code_expires_at, code_redeemed_at)
    on data.consent_requests to gateway_app;

create function api.open_consent_request(
    p_who jsonb, p_role text, p_actor uuid, p_partner uuid, p_scopes text[],
    p_redirect_uri text, p_state text, p_consent_expires_at timestamptz
) returns setof data.consent_requests
    language plpgsql volatile
    as $$
declare
    asked data.partners;
    opened data.consent_requests;
    refused text[];
begin
    perform api.enter_scope(p_role, p_actor, null);
    if p_role <> 'patient' then
        return;
    end if;
    select * into asked from data.partners where id = p_partner and disabled_at is null;
    if asked.id is null then
        raise exception 'No such partner' using errcode = 'GW400';
    end if;
    if not p_redirect_uri = any(asked.redirect_uris) then
        raise exception 'The redirect URI is not registered for %', asked.name
            using errcode = 'GW400';
    end if;
    refused := array(select s from unnest(p_scopes) s where not s = any(asked.allowed_scopes)
                     order by s);
    if cardinality(refused) > 0 then
        raise exception '% may not ask for %', asked.name, array_to_string(refused, ', ')
            using errcode = 'GW400';
    end if;
    insert into data.consent_requests
        (id, patient_id, partner_id, scopes, redirect_uri, state, consent_expires_at,
         valid_until)
    values (gen_random_uuid(), p_actor, p_partner,
            array(select distinct s from unnest(p_scopes) s order by s), p_redirect_uri,
            p_state, p_consent_expires_at, now() + interval '15 minutes')
    returning * into opened;
    return next opened;
end
$$;

create function api.answer_consent_request(
    p_who jsonb, p_role text, p_actor uuid, p_request uuid, p_approve boolean,
    p_code_digest bytea
) returns setof data.consent_requests
    language plpgsql volatile
    as $$
declare
    asked data.consent_requests;
    partner data.partners;
    granted data.consents;
begin
    perform api.enter_scope(p_role, p_actor, null);
    select * into asked from data.consent_requests
    where id = p_request and p_role = 'patient' and patient_id = p_actor
    for update;
    if asked.id is null then
        return;
    end if;
    if asked.answered_at is not null then
        raise exception 'This consent request was already answered' using errcode = 'GW400';
    end if;
    if now() >= asked.valid_until then
        raise exception 'This consent request has expired: go back to the partner and start again'
            using errcode = 'GW400';
    end if;
    -- The partner as registered now: disabled, or the address removed, since it asked.
    select * into partner from data.partners where id = asked.partner_id and disabled_at is null;
    if partner.id is null then
        raise exception 'No such partner' using errcode = 'GW400';
    end if;
    if not asked.redirect_uri = any(partner.redirect_uris) then
        raise exception 'The redirect URI is no longer registered for %', partner.name
            using errcode = 'GW400';
    end if;
    if p_approve then
        select * into granted from api.grant_consent(
            p_who, p_role, p_actor, asked.partner_id, asked.scopes, asked.consent_expires_at);
    end if;
    update data.consent_requests
    set answered_at = now(), approved = p_approve, consent_id = granted.id,
        code_digest = case when p_approve then p_code_digest end,
        code_expires_at = case when p_approve then now() + interval '10 minutes' end
    where id = asked.id
    returning * into asked;
    return next asked;
end
$$;

-- The partner's half: the code it was sent back with, redeemed once, within ten minutes, by the
-- partner it was issued to, with the state of the session that sent the patient (kept at the
-- partner's side, not read from the return: a code stolen from a browser and brought back in
-- another session names nobody), for the patient who approved (an id; every row it leads to is
-- then loaded under the partner's consent, as any other).
create function api.redeem_consent_code(
    p_who jsonb, p_role text, p_actor uuid, p_code_digest bytea, p_state text
) returns table (patient_id uuid, consent_id uuid)
    language plpgsql volatile
    as $$
declare
    issued data.consent_requests;
begin
    perform api.enter_scope(p_role, p_actor, null);
    select * into issued from data.consent_requests r
    where r.code_digest = p_code_digest and p_role = 'partner' and r.partner_id = p_actor
    for update;
    if issued.id is null or issued.code_redeemed_at is not null
       or now() >= issued.code_expires_at or issued.state is distinct from p_state then
        raise exception 'This code is not valid: unknown, used, or older than ten minutes'
            using errcode = 'GW400';
    end if;
    update data.consent_requests r set code_redeemed_at = now() where r.id = issued.id;
    return query select issued.patient_id, issued.consent_id;
end
$$;

-- One consent in force per patient and partner ("replaces any earlier consent"), also when two
-- approvals (two tabs, two requests) run at once: the second waits for the first, then revokes
-- what the first granted. (No unique index: a trail of an earlier race may hold two, and this
-- migration must apply to it.)

create or replace function api.grant_consent(
    p_who jsonb, p_role text, p_actor uuid, p_partner uuid, p_scopes text[],
    p_expires_at timestamptz
) returns setof data.consents
    language plpgsql volatile
    as $$
declare
    granted data.consents;
begin
    perform api.enter_scope(p_role, p_actor, null);
    if p_role <> 'patient' then
        return;
    end if;
    perform pg_advisory_xact_lock(hashtextextended(p_actor::text || '/' || p_partner::text, 14));
    update data.consents set revoked_at = now()
    where patient_id = p_actor and partner_id = p_partner and revoked_at is null;
    insert into data.consents (id, patient_id, partner_id, scopes, expires_at)
    values (gen_random_uuid(), p_actor, p_partner,
            array(select distinct s from unnest(p_scopes) s order by s), p_expires_at)
    returning * into granted;
    perform api.record_change(p_who, p_role, p_actor, 'consent-granted', p_actor,
        jsonb_build_object('consent', granted.id, 'partner', granted.partner_id,
                           'scopes', granted.scopes, 'expires_at', granted.expires_at), null);
    return next granted;
end
$$;

revoke all on all functions in schema api from public;
grant execute on all functions in schema api to gateway_app;
