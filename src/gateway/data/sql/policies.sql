-- Row-level security on every table of patient data: layer 3 of the invariant (DESIGN.md). The
-- tables force it, so it binds the owner too. Applying this file drops every policy first and
-- creates these, in the same transaction.
--
-- The caller's scope is read once per statement, not once per row: api.scope_role(),
-- api.scope_actor() and api.scope_scopes() are written as scalar sub-selects, which PostgreSQL
-- evaluates once (InitPlans) and compares per row like parameters, so that the indexes serve;
-- called directly they would be inlined into per-row current_setting(...) calls.
-- tests/test_rls_plans.py reads EXPLAIN of every patient-data table under every role and fails on
-- a per-row call.

-- The tables of patient data: nobody but a superuser reads or writes a row no policy admits.
alter table data.patients enable row level security;
alter table data.patients force row level security;
alter table data.consultations enable row level security;
alter table data.consultations force row level security;
alter table data.recordings enable row level security;
alter table data.recordings force row level security;
alter table data.consents enable row level security;
alter table data.consents force row level security;
alter table data.consent_requests enable row level security;
alter table data.consent_requests force row level security;
alter table data.break_glass_grants enable row level security;
alter table data.break_glass_grants force row level security;
alter table data.access_events enable row level security;
alter table data.access_events force row level security;

create policy access_event_append on data.access_events for insert to gateway_app with check (true);

-- The owner (current_user: the migrate applies this file as the owner) appends the operators'
-- own events: account and partner changes, the archive's (gateway.data.administration,
-- gateway.audit.archive). It reads none.
create policy access_event_operator_append on data.access_events for insert to current_user
    with check (role = 'operator');

-- data.access_events forces row-level security (0001): the reader sees every event, through a
-- policy of its own that allows reading only.
create policy access_event_audit_read on data.access_events
    for select to gateway_audit_reader using (true);

create policy access_event_rows on data.access_events for select to gateway_app using (
    ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
    or (select api.scope_role()) = 'auditor'
);

create policy break_glass_open on data.break_glass_grants for insert to gateway_app with check (
    (select api.scope_role()) = 'clinician' and clinician_id = (select api.scope_actor())
);

create policy break_glass_rows on data.break_glass_grants for select to gateway_app using (
    ((select api.scope_role()) = 'clinician' and clinician_id = (select api.scope_actor()))
    or ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
);

create policy consent_request_answer on data.consent_requests for update to gateway_app
    using (api.scope_role() = 'patient' and patient_id = api.scope_actor())
    with check (api.scope_role() = 'patient' and patient_id = api.scope_actor());

create policy consent_request_open on data.consent_requests for insert to gateway_app
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

create policy consent_request_rows on data.consent_requests for select to gateway_app using (
    api.scope_role() = 'patient' and patient_id = api.scope_actor()
);

create policy consent_grant on data.consents for insert to gateway_app with check (
    (select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor())
);

create policy consent_revoke on data.consents for update to gateway_app
    using ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
    with check ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()));

create policy consent_rows on data.consents for select to gateway_app using (
    ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
    or ((select api.scope_role()) = 'partner' and partner_id = (select api.scope_actor()))
);

create policy consultation_rows on data.consultations for select to gateway_app using (
    ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
    or ((select api.scope_role()) = 'clinician' and (
        clinician_id = (select api.scope_actor())
        or exists (
            select 1 from data.break_glass_grants g
            where g.clinician_id = (select api.scope_actor()) and g.patient_id = consultations.patient_id
              and g.revoked_at is null and now() < g.expires_at)))
    or (select api.scope_role()) = 'support'
    or ((select api.scope_role()) = 'partner'
        and 'patient/Consultation.rs' = any((select api.scope_scopes())::text[])
        and exists (
            select 1 from data.consents k
            where k.partner_id = (select api.scope_actor()) and k.patient_id = consultations.patient_id
              and k.revoked_at is null and now() < k.expires_at
              and 'patient/Consultation.rs' = any(k.scopes)))
);

create policy patient_rows on data.patients for select to gateway_app using (
    ((select api.scope_role()) = 'patient' and id = (select api.scope_actor()))
    or ((select api.scope_role()) = 'clinician'
        and exists (select 1 from data.consultations c where c.patient_id = patients.id))
    or (select api.scope_role()) = 'support'
    or ((select api.scope_role()) = 'partner'
        and 'patient/Patient.rs' = any((select api.scope_scopes())::text[])
        and exists (
            select 1 from data.consents k
            where k.partner_id = (select api.scope_actor()) and k.patient_id = patients.id
              and k.revoked_at is null and now() < k.expires_at
              and 'patient/Patient.rs' = any(k.scopes)))
);

create policy recording_rows on data.recordings for select to gateway_app using (
    ((select api.scope_role()) in ('patient', 'clinician')
        and exists (select 1 from data.consultations c where c.id = recordings.consultation_id))
    or ((select api.scope_role()) = 'partner'
        and 'patient/Recording.rs' = any((select api.scope_scopes())::text[])
        and exists (
            select 1 from data.consents k
            where k.partner_id = (select api.scope_actor()) and k.patient_id = recordings.patient_id
              and k.revoked_at is null and now() < k.expires_at
              and 'patient/Recording.rs' = any(k.scopes)))
);
