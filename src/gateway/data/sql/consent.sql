-- Consents, consent requests and break-glass: the rows that open a patient to a partner or to a
-- clinician in an emergency, each change audited in the same transaction (api.record_change).
-- Start times are the database's clock, never the caller's; hard ceilings (a consent at most
-- three years, break-glass at most a day) are table constraints.

-- Start times are the database's clock, never the caller's.
create or replace function data.stamp_start() returns trigger
    language plpgsql
    as $$
begin
    if tg_table_name = 'consents' then
        new.granted_at := now();
    else
        new.opened_at := now();
    end if;
    return new;
end
$$;

create or replace function api.consents_of(p_role text, p_actor uuid)
    returns table (consent data.consents, partner_name text)
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, null);
    return query
        select k, pt.name from data.consents k join data.partners pt on pt.id = k.partner_id
        where p_role = 'patient' and k.patient_id = p_actor
        order by k.granted_at desc;
end
$$;

-- Changes of access write their own audit event in the same statement: a change is never
-- made without its record. p_who is {"request_id", "issuer", "subject", "client_id"}.
create or replace function api.record_change(
    p_who jsonb, p_role text, p_actor uuid, p_kind text, p_patient uuid, p_detail jsonb,
    p_break_glass_reason text
) returns void
    language sql volatile
    as $$
    insert into data.access_events
        (request_id, kind, issuer, subject, role, actor_id, patient_id, client_id,
         break_glass_reason, detail)
    values (p_who->>'request_id', p_kind, p_who->>'issuer', p_who->>'subject', p_role, p_actor,
            p_patient, p_who->>'client_id', p_break_glass_reason, p_detail)
$$;

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

create or replace function api.revoke_consent(p_who jsonb, p_role text, p_actor uuid, p_consent uuid)
    returns setof data.consents
    language plpgsql volatile
    as $$
declare
    revoked data.consents;
begin
    perform api.enter_scope(p_role, p_actor, null);
    update data.consents set revoked_at = now()
    where id = p_consent and p_role = 'patient' and patient_id = p_actor
      and revoked_at is null
    returning * into revoked;
    if revoked.id is not null then
        perform api.record_change(p_who, p_role, p_actor, 'consent-revoked', p_actor,
            jsonb_build_object('consent', revoked.id, 'partner', revoked.partner_id), null);
        return next revoked;
    end if;
end
$$;

-- Break-glass, by a clinician: bounded in time by the caller (the gateway's maximum).
create or replace function api.open_break_glass(
    p_who jsonb, p_role text, p_actor uuid, p_patient uuid, p_reason text, p_minutes integer
) returns setof data.break_glass_grants
    language plpgsql volatile
    as $$
declare
    opened data.break_glass_grants;
begin
    perform api.enter_scope(p_role, p_actor, null);
    if p_role <> 'clinician' then
        return;
    end if;
    insert into data.break_glass_grants (id, clinician_id, patient_id, reason, expires_at)
    values (gen_random_uuid(), p_actor, p_patient, btrim(p_reason),
            now() + make_interval(mins => p_minutes))
    returning * into opened;
    perform api.record_change(p_who, p_role, p_actor, 'break-glass-opened', p_patient,
        jsonb_build_object('grant', opened.id, 'expires_at', opened.expires_at), opened.reason);
    return next opened;
end
$$;

create or replace function api.open_consent_request(
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

create or replace function api.answer_consent_request(
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
create or replace function api.redeem_consent_code(
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

create or replace trigger break_glass_opened_now before insert on data.break_glass_grants
    for each row execute function data.stamp_start();

create or replace trigger consents_granted_now before insert on data.consents
    for each row execute function data.stamp_start();
