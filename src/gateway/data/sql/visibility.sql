-- Layers 2 and 3 of the invariant (DESIGN.md): who the caller is for the database, and which
-- patients and rows they may see. api.enter_scope sets the caller's role, actor and token scopes
-- for the current transaction; row-level security (policies.sql) and every function here read
-- them. api.grant_for names the grant each row is seen under: `own` (a patient's own), `conducted`
-- (a clinician's own consultation, its patient and recordings), `break-glass`, `everyone`
-- (support) or `consent` (a partner, with the consent's scopes intersected with the token's).
-- Layer 1 checks that grant against the policy table before any field of the row is read.

-- Layer 3: the caller's scope, as set by api.enter_scope for the current transaction only.
create or replace function api.scope_role() returns text
    language sql stable parallel safe
    as $$ select nullif(current_setting('gateway.role', true), '') $$;

create or replace function api.scope_actor() returns uuid
    language sql stable parallel safe
    as $$ select nullif(current_setting('gateway.actor_id', true), '')::uuid $$;

create or replace function api.scope_scopes() returns text[]
    language sql stable parallel safe
    as $$ select string_to_array(nullif(current_setting('gateway.scopes', true), ''), ' ') $$;

-- Layer 3 settings: the token's scopes too (partners).
create or replace function api.enter_scope(p_role text, p_actor uuid, p_scopes text[])
    returns void
    language plpgsql volatile
    as $$
begin
    perform set_config('gateway.role', coalesce(p_role, ''), true);
    perform set_config('gateway.actor_id', coalesce(p_actor::text, ''), true);
    perform set_config('gateway.scopes', array_to_string(coalesce(p_scopes, '{}'), ' '), true);
end
$$;

-- Layer 4's independent questions.
create or replace function api.conducted_or_break_glass(p_clinician uuid, p_candidates uuid[])
    returns setof uuid
    language sql stable
    as $$
    select x from unnest(p_candidates) x
    where exists (select 1 from data.consultations c
                  where c.patient_id = x and c.clinician_id = p_clinician)
       or exists (select 1 from data.break_glass_grants g
                  where g.patient_id = x and g.clinician_id = p_clinician
                    and g.revoked_at is null and now() < g.expires_at)
$$;

create or replace function api.consenting_patients(p_partner uuid, p_scope text, p_candidates uuid[])
    returns setof uuid
    language sql stable
    as $$
    select x from unnest(p_candidates) x
    where exists (select 1 from data.consents k
                  where k.patient_id = x and k.partner_id = p_partner
                    and k.revoked_at is null and now() < k.expires_at
                    and p_scope = any(k.scopes))
$$;

-- The grant under which a caller sees one patient's row of a type that needs p_needs (a SMART
-- scope). No row: not visible. Parameters only; no settings read.
create or replace function api.grant_for(
    p_role text, p_actor uuid, p_scopes text[], p_patient uuid, p_clinician uuid, p_needs text
) returns table (consent_scopes text[], break_glass_reason text, granted text)
    language sql stable
    as $$
    select x.consent_scopes, x.break_glass_reason, x.granted from (
        select 1 as priority, null::text[] as consent_scopes, null::text as break_glass_reason,
               'own'::text as granted
        where p_role = 'patient' and p_patient = p_actor
        union all
        select 1, null, null, 'conducted'
        where p_role = 'clinician' and p_clinician = p_actor
        union all
        select 2, null, g.reason, 'break-glass'
        from data.break_glass_grants g
        where p_role = 'clinician' and g.clinician_id = p_actor and g.patient_id = p_patient
          and g.revoked_at is null and now() < g.expires_at
        union all
        select 1, null, null, 'everyone'
        where p_role = 'support' and p_needs in ('patient/Consultation.rs', 'patient/Patient.rs')
        union all
        select 1, array(select s from unnest(k.scopes) s where s = any(p_scopes) order by s), null,
               'consent'
        from data.consents k
        where p_role = 'partner' and k.partner_id = p_actor and k.patient_id = p_patient
          and k.revoked_at is null and now() < k.expires_at
          and p_needs = any(k.scopes) and p_needs = any(p_scopes)
    ) x
    order by x.priority
    limit 1
$$;

create or replace function api.authorized_patients(
    p_role text, p_actor uuid, p_scopes text[], p_needs text, p_candidates uuid[]
) returns setof uuid
    language plpgsql volatile
    as $$
begin
    perform api.enter_scope(p_role, p_actor, p_scopes);
    if p_role = 'clinician' then
        return query select * from api.conducted_or_break_glass(p_actor, p_candidates);
    elsif p_role = 'partner' and p_needs = any(p_scopes) then
        return query select * from api.consenting_patients(p_actor, p_needs, p_candidates);
    end if;
end
$$;
