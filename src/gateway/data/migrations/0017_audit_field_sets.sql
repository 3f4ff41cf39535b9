-- A disclosure's groups by reference: each distinct (type, set of fields) is stored once, in
-- data.audit_field_sets, and an event holds the ids of its groups' field sets (object_sets) and
-- how many of its object_ids each covers (object_counts) instead of the names themselves. The
-- record of a patient's replays page shrinks by the names' 250 bytes or so, to its ids and a
-- few integers. The chain hash covers the same text as before (the groups as
-- [[type, fields, count], ...], read from the field sets), so changing a field set afterwards
-- breaks every event that refers to it, and an event naming a set that does not exist is
-- refused when it is written. Events written in 0016's form (object_groups) keep it.

create table data.audit_field_sets (
    id integer generated always as identity primary key,
    type_name text not null,
    fields text[] not null,
    unique (type_name, fields)
);  -- field names, for the access log

alter table data.access_events add column object_sets integer[];
alter table data.access_events add column object_counts integer[];

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
