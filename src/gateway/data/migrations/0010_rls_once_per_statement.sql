-- Row-level security reads the caller's scope once per statement, not once per row.
--
-- The policies called api.scope_role(), api.scope_actor() and api.scope_scopes() in their
-- expressions; PostgreSQL inlines those SQL functions into current_setting(...) calls evaluated
-- for every row the scan visits (support's newest 500 consultations: a sequential scan of every
-- consultation, 29 ms, reading the settings per row). Written as scalar sub-selects they become
-- InitPlans: evaluated once, their values compared per row like parameters, and the planner can
-- use the indexes. The rules are unchanged, policy for policy; tests/test_rls_plans.py reads
-- EXPLAIN of every patient-data table under every role and fails on a per-row call.

drop policy consultation_rows on data.consultations;
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

drop policy recording_rows on data.recordings;
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

drop policy patient_rows on data.patients;
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

drop policy consent_rows on data.consents;
create policy consent_rows on data.consents for select to gateway_app using (
    ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
    or ((select api.scope_role()) = 'partner' and partner_id = (select api.scope_actor()))
);
drop policy consent_grant on data.consents;
create policy consent_grant on data.consents for insert to gateway_app with check (
    (select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor())
);
drop policy consent_revoke on data.consents;
create policy consent_revoke on data.consents for update to gateway_app
    using ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
    with check ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()));

drop policy break_glass_rows on data.break_glass_grants;
create policy break_glass_rows on data.break_glass_grants for select to gateway_app using (
    ((select api.scope_role()) = 'clinician' and clinician_id = (select api.scope_actor()))
    or ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
);
drop policy break_glass_open on data.break_glass_grants;
create policy break_glass_open on data.break_glass_grants for insert to gateway_app with check (
    (select api.scope_role()) = 'clinician' and clinician_id = (select api.scope_actor())
);

drop policy access_event_rows on data.access_events;
create policy access_event_rows on data.access_events for select to gateway_app using (
    ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))
    or (select api.scope_role()) = 'auditor'
);
