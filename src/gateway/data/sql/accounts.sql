-- Accounts and partners: the account behind a verified (issuer, subject), read as the owner
-- (the application role cannot read data.accounts), and the notification that makes every
-- gateway forget the accounts it remembers when an account or a partner changes.

-- A disabled account, or an account of a disabled partner, is no account: its tokens are refused
-- from the next request on (a playback cookie comes back through here on each range request).
create or replace function api.account_for(p_issuer text, p_subject text)
    returns table (role text, patient_id uuid, clinician_id uuid, partner_id uuid,
                   developer boolean)
    language sql stable security definer set search_path = pg_catalog, data
    as $$
    select a.role, a.patient_id, a.clinician_id, a.partner_id, a.developer
    from data.accounts a
    left join data.partners p on p.id = a.partner_id
    where a.issuer = p_issuer and a.subject = p_subject
      and a.disabled_at is null and p.disabled_at is null
$$;

-- A disabled partner is no longer offered to patients (consents already given stay readable in
-- the patient's list and stop counting at once: the partner's accounts are refused above).
create or replace function api.all_partners()
    returns setof data.partners
    language sql stable
    as $$ select p.* from data.partners p where p.disabled_at is null order by p.name $$;

create or replace function data.notify_accounts_changed() returns trigger
    language plpgsql
    as $$
begin
    perform pg_notify('gateway_accounts', tg_table_name);
    return null;
end
$$;

create or replace trigger accounts_changed
    after insert or update or delete or truncate on data.accounts
    for each statement execute function data.notify_accounts_changed();

create or replace trigger partners_changed
    after insert or update or delete or truncate on data.partners
    for each statement execute function data.notify_accounts_changed();
