-- A role that reads the audit trail and nothing else: what the nightly `gateway audit verify`
-- runs as (k8s/base/audit-verify-cronjob.yaml), so that neither the owner's nor a superuser's
-- credentials sit in a CronJob. It may read the events, the field sets they name and the chain
-- heads (which name patients by id, with break-glass reasons); it reads no patient record,
-- consultation or recording, calls no function of `api`, and writes nothing. The deployment makes
-- a login role a member of it (the prod overlay declares gateway_auditor IN ROLE
-- gateway_audit_reader).
--
-- The role must exist before (the prod overlay declares it; ``gateway.dev.embedded.provision``
-- makes it for development and tests): the owner that migrates has no CREATEROLE. Refused when it
-- exists with dangerous attributes.
do $$
begin
    if not exists (select from pg_roles where rolname = 'gateway_audit_reader') then
        raise exception 'role gateway_audit_reader is missing: create it first (NOLOGIN; the '
                        'prod overlay declares it among the Cluster''s managed roles)';
    elsif exists (
        select from pg_roles
        where rolname = 'gateway_audit_reader'
          and (rolsuper or rolbypassrls or rolcreaterole or rolcreatedb)
    ) then
        raise exception 'role gateway_audit_reader exists with SUPERUSER, BYPASSRLS, CREATEROLE '
                        'or CREATEDB; refusing to migrate';
    end if;
end
$$;

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
