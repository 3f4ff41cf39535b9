-- The audit write resolves its field sets itself. Until now the gateway sent the ids of the
-- field sets an event names, learnt once per process; after a restore to a point before a set
-- existed, its id could be given to another set and a remembered id would then name the wrong
-- type and fields, silently. Now the event carries its groups' names ([type, fields, count]) and
-- the write looks each set up (making it on first use) in the same statement, so the names
-- stored are the names sent. The groups are also checked where they are hashed: every set named
-- exists, counts are whole and add up to the ids stored, and an event has one form of groups.

-- A field set's id: looked up (one index probe), made only when missing.

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
