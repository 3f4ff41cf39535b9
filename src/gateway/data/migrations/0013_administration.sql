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

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
