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

-- One consent in force per patient and partner ("replaces any earlier consent"), also when two
-- approvals (two tabs, two requests) run at once: the second waits for the first, then revokes
-- what the first granted. (No unique index: a trail of an earlier race may hold two, and this
-- migration must apply to it.)

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations), and so is which
-- tables force row-level security (policies.sql).
