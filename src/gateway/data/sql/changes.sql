-- The change feed behind subscriptions: notifications that carry IDs only.

-- Live consultation events for subscriptions: a change of a consultation (status, mode) or a
-- new recording segment notifies channel `consultation_events` with IDs only; subscribers
-- re-read the row through their own scoped loaders, so a notification carries no patient data.
create or replace function data.notify_consultation_event() returns trigger
    language plpgsql
    as $$
begin
    if tg_table_name = 'consultations' then
        perform pg_notify('consultation_events',
            json_build_object('consultation', new.id, 'kind', 'updated')::text);
    else
        perform pg_notify('consultation_events',
            json_build_object('consultation', new.consultation_id, 'kind', 'recording-added')::text);
    end if;
    return null;
end
$$;

create or replace trigger consultations_notify after update on data.consultations
    for each row execute function data.notify_consultation_event();

create or replace trigger recordings_notify after insert on data.recordings
    for each row execute function data.notify_consultation_event();
