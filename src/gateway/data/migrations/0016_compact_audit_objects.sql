-- A disclosure's objects stored compactly: the ids of its objects as one uuid[] (16 bytes each),
-- in groups of one type and one set of fields, the groups as [[type, [fields], count], ...]. A
-- page of fifty consultations with their recordings was about 20 KB of JSON text (one entry per
-- object) and 5.6 KB stored; now it is its ids and three groups. Objects whose keys are not
-- uuids (access events, by their sequence number) stay in `objects`, grouped as JSON. Events
-- written before keep their form: data.event_objects reads every form as grouped JSON, and the
-- chain hash of an event without object_ids is what it always was.

alter table data.access_events add column object_groups jsonb;
alter table data.access_events add column object_ids uuid[];

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
