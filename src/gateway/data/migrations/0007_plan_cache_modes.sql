-- How PostgreSQL plans the statements inside the api functions.
--
-- The page functions choose their predicate with `case p_role ...`: only a plan made for the
-- actual role can use the index for it (a patient's page: consultations_by_patient). PL/pgSQL
-- caches plans per connection and, after five calls, may switch to one generic plan for every
-- role; once a connection had served a few support pages (500 rows), patients' pages on it ran
-- the generic plan, a sequential scan of every consultation: 72-117 ms instead of 2.5 ms at
-- 50,000 consultations (measured with bench/'s data). So the page functions are always planned
-- for their arguments.
alter function api.consultations_page(text, uuid, text[], integer, timestamptz, uuid)
    set plan_cache_mode = force_custom_plan;
alter function api.access_events_page(text, uuid, text[], integer, bigint)
    set plan_cache_mode = force_custom_plan;

-- The by-ID functions find rows by `id = any(p_ids)` (or the patient or consultation key), which
-- every plan can use; planning them for each call cost more than running them (2.9 ms against
-- 0.5 ms for a patient with its row-level security policies), so they keep one generic plan.
alter function api.consultations_by_id(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
alter function api.consultations_by_patient(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
alter function api.recordings_by_consultation(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
alter function api.recordings_by_id(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
alter function api.patients_by_id(text, uuid, text[], uuid[])
    set plan_cache_mode = force_generic_plan;
