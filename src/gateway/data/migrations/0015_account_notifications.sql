-- Gateways remember the account behind a verified (issuer, subject) between requests
-- (gateway.authn.accounts, GATEWAY_ACCOUNT_CACHE_SIZE) and forget every one of them when this
-- channel says the accounts or the partners may have changed: a disabled, removed or re-roled
-- account, or a disabled partner, is refused from the notification on (milliseconds after the
-- commit), and nothing is remembered while a gateway's LISTEN connection is down.

create function data.notify_accounts_changed() returns trigger
    language plpgsql
    as $$
begin
    perform pg_notify('gateway_accounts', tg_table_name);
    return null;
end
$$;

create trigger accounts_changed
    after insert or update or delete or truncate on data.accounts
    for each statement execute function data.notify_accounts_changed();

create trigger partners_changed
    after insert or update or delete or truncate on data.partners
    for each statement execute function data.notify_accounts_changed();
