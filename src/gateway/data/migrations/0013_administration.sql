-- Administration without hand-written SQL (`gateway accounts ...`, `gateway partners ...`): an
-- account or a partner is disabled rather than deleted, so that the audit trail's references to
-- it stay meaningful; a partner carries its OAuth client id, the SMART scopes it may ask patients
-- for and the redirect URIs the consent page may send patients back to. Every change is an event
-- of the audit trail (kinds account-changed and partner-changed), written by the command in the
-- transaction of the change.

alter table data.accounts add column disabled_at timestamptz;

alter table data.partners add column client_id text unique;
alter table data.partners add column allowed_scopes text[] not null default '{}';
alter table data.partners add column redirect_uris text[] not null default '{}';
alter table data.partners add column disabled_at timestamptz;

alter table data.access_events drop constraint access_events_kind_check;
alter table data.access_events add constraint access_events_kind_check check (kind in (
    'disclosure', 'denial', 'alert', 'media', 'consent-granted', 'consent-revoked',
    'break-glass-opened', 'account-changed', 'partner-changed'));

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
