-- Every role: support staff, partners under consent and scopes, auditors, and break-glass.
--
-- Loader functions now take the caller's token scopes and return, beside each row, the grant it
-- was seen under: the consent's scopes (intersected with the token's) for a partner, the reason
-- for a clinician reading under break-glass. Field rules that depend on the row read these.

alter table data.consents add constraint consents_scopes_known check (
    scopes <@ array['patient/Consultation.rs', 'patient/Recording.rs', 'patient/Patient.rs']
    and cardinality(scopes) > 0
);
alter table data.consents add constraint consents_expiry_after_grant check (expires_at > granted_at);
alter table data.break_glass_grants add constraint break_glass_reason_length
    check (length(btrim(reason)) >= 20);
-- Hard ceilings the database keeps whatever the gateway is configured to allow.
alter table data.break_glass_grants add constraint break_glass_at_most_a_day
    check (expires_at <= opened_at + interval '24 hours');
alter table data.consents add constraint consents_at_most_three_years
    check (expires_at <= granted_at + interval '3 years');

-- A recording's media key names its patient and itself, and no two recordings share one, so
-- a media file can only ever be served for the row that owns it.
alter table data.recordings add constraint recordings_storage_key_unique unique (storage_key);
alter table data.recordings add constraint recordings_storage_key_owned check (
    storage_key ~ ('^recordings/' || patient_id::text || '/' || id::text || '\.[a-z0-9]+$')
);

create index consultations_by_time on data.consultations (scheduled_at desc, id desc);
create index consents_active on data.consents (patient_id, partner_id) where revoked_at is null;

-- Changes of access are audited too.
alter table data.access_events drop constraint access_events_kind_check;
alter table data.access_events add constraint access_events_kind_check check (kind in (
    'disclosure', 'denial', 'alert', 'media', 'consent-granted', 'consent-revoked',
    'break-glass-opened'));

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
