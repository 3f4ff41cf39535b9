-- Accounts with the developer capability may send free-form GraphQL documents to a production
-- gateway; everyone else sends trusted (persisted) documents only.
alter table data.accounts add column developer boolean not null default false;

drop function api.account_for(text, text);
create function api.account_for(p_issuer text, p_subject text)
    returns table (role text, patient_id uuid, clinician_id uuid, partner_id uuid,
                   developer boolean)
    language sql stable security definer set search_path = pg_catalog, data
    as $$
    select a.role, a.patient_id, a.clinician_id, a.partner_id, a.developer
    from data.accounts a
    where a.issuer = p_issuer and a.subject = p_subject
$$;
revoke all on function api.account_for(text, text) from public;
grant execute on function api.account_for(text, text) to gateway_app;
