-- The patient's access log as a patient reads it (issue 24): others' accesses apart from the
-- patient's own reads, and emergency (break-glass) accesses on their own, each a page by seq.
--
-- access_events_page gains two filters, false by default (the page as before): p_by_others keeps
-- the events of anyone but a patient (on a patient's log: anyone but the patient), p_emergency
-- the events that carry a break-glass reason. Each has a partial index of the patient's events
-- it keeps, newest first, and a statement of its own that the index serves, so that a page of
-- them does not walk past the patient's own reads (tests/test_access_log_views.py counts the
-- index scans). A patient's own read matches neither predicate: the indexes cost nothing on
-- that path. The auditor's statement takes the same filters (no index: it reads every patient).

create index access_events_by_others on data.access_events (patient_id, seq desc)
    where role is distinct from 'patient' and seq is not null;
create index access_events_emergency on data.access_events (patient_id, seq desc)
    where break_glass_reason is not null and seq is not null;

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
