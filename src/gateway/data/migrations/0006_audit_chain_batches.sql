-- Appending to the audit chain in batches. Until now each inserted event locked and UPDATEd the
-- head row: a statement writing 500 events (a support page of 500 patients) made 500 versions of
-- that one row, each looked up again by the next row's trigger, and concurrent writers queued
-- behind it past the statement timeout. Now the row trigger takes its predecessor from the table
-- itself (rows inserted earlier by the same statement are visible to a row-level BEFORE
-- trigger), the head row is only locked (which serializes appends across replicas, as before)
-- and it is advanced once per statement. Hashes and sequence numbers are defined exactly as
-- before, so `gateway audit verify` checks old and new events alike.

create or replace function data.chain_access_event() returns trigger
    language plpgsql security definer set search_path = pg_catalog, data
    as $$
declare
    head data.audit_chain_head;
    last_seq bigint;
    last_hash bytea;
begin
    -- Held to the end of the transaction; taking it again for the next row changes nothing.
    select * into head from data.audit_chain_head where id = 1 for update;
    select e.seq, e.hash into last_seq, last_hash
      from data.access_events e
     where e.seq is not null
     order by e.seq desc
     limit 1;
    -- The head is the predecessor when the table has nothing newer: the genesis, or a tail that
    -- was removed (the new event then continues from the head, and verify names the gap).
    if last_seq is null or last_seq < head.last_seq then
        last_seq := head.last_seq;
        last_hash := head.last_hash;
    end if;
    new.occurred_at := now();
    new.seq := last_seq + 1;
    new.prev_hash := last_hash;
    new.hash := data.access_event_hash(last_hash, new);
    return new;
end
$$;

create function data.advance_chain_head() returns trigger
    language plpgsql security definer set search_path = pg_catalog, data
    as $$
begin
    update data.audit_chain_head h
       set last_seq = e.seq, last_hash = e.hash
      from (select seq, hash from data.access_events
             where seq is not null order by seq desc limit 1) e
     where h.id = 1 and e.seq > h.last_seq;
    return null;
end
$$;

create trigger access_events_chain_head after insert on data.access_events
    for each statement execute function data.advance_chain_head();

revoke all on function data.advance_chain_head() from public;
