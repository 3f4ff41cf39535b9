-- An archived month is dropped without waiting for the trail's writers, and a verification's
-- checkpoints are kept, one row each, only moving forward (issue 26, after review).
--
-- The trail's foreign key to data.audit_chains made dropping a month take ACCESS EXCLUSIVE on
-- audit_chains (its triggers change), so any open audit write, which holds a chain's row, held
-- the drop up, and every write queued behind it. The key goes: an event gets its chain only from
-- the chain trigger (audit.sql), which takes that chain's row FOR UPDATE, so no event can name a
-- chain that does not exist; and an event whose chain row was removed is reported by
-- `gateway audit verify` ("no such chain").
do $$
declare
    name text;
begin
    for name in select conname from pg_constraint
                where conrelid = 'data.access_events'::regclass and contype = 'f'
                  and confrelid = 'data.audit_chains'::regclass
    loop
        execute format('alter table data.access_events drop constraint %I', name);
    end loop;
end
$$;

-- Checkpoints: a row per checkpoint recorded (when, by which login), never changed, so that
-- `gateway audit verify --full` holds every one of them against the events and a checkpoint
-- moved by hand shows who moved it. The current checkpoint of a chain is its furthest;
-- data.record_audit_checkpoint (audit.sql) refuses one behind it.
alter table data.audit_checkpoints drop constraint audit_checkpoints_pkey;
alter table data.audit_checkpoints
    add column id bigint generated always as identity primary key,
    add column recorded_by text not null default session_user;
create index audit_checkpoints_by_chain on data.audit_checkpoints (chain_id, chain_seq desc);

-- The functions, triggers and privileges this migration changed are defined, as they stand
-- now, in src/gateway/data/sql/ (applied after the migrations).
