"""The SQL in force is the files in src/gateway/data/sql: a fresh database and one migrated from
the last release with data in it end with exactly those definitions (compared in the catalog:
``pg_get_functiondef``, ``pg_policies``, ``pg_get_triggerdef``, the privileges), a definition
changed by hand is put back by the next migrate, and the migrate of a running system takes only
the locks it must, for as long as it must."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.audit.chain import verify_chain
from gateway.data.definitions import (
    AREAS,
    apply_definitions,
    available_definitions,
    catalog_digest,
    definitions_current,
    lock_tables,
    write_definitions,
)
from gateway.data.migrate import DEFINITIONS, apply_migrations, available_migrations, hand_over
from gateway.data.queries import RECORD_ACCESS_EVENTS
from gateway.dev.embedded import OWNER, with_credentials
from gateway.dev.seed import SeedPlan, seed_database
from gateway.errors import ConfigurationError
from tests.support.released import migrate_as_released, released_migrations

SQL = Path(__file__).parents[1] / "src" / "gateway" / "data" / "sql"
MIGRATIONS = SQL.parent / "migrations"

# Every object the definitions make, one row each, as the catalog shows it.
CATALOG = """
select 'function ' || p.oid::regprocedure::text as name,
       pg_get_functiondef(p.oid) || ' acl ' ||
       array_to_string(array(select unnest(coalesce(
           p.proacl, acldefault('f'::"char", p.proowner)))::text order by 1), ',') as definition
from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname in ('data', 'api')
union all
select format('policy %s on %s.%s', policyname, schemaname, tablename),
       format('%s %s to %s using (%s) with check (%s)', permissive, cmd, roles, qual, with_check)
from pg_policies where schemaname in ('data', 'api')
union all
select format('trigger %s on %s', t.tgname, t.tgrelid::regclass),
       pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
where not t.tgisinternal and n.nspname in ('data', 'api')
union all
select 'relation ' || c.oid::regclass::text,
       array_to_string(array(select unnest(coalesce(c.relacl, acldefault(
           (case c.relkind when 'S' then 's' else 'r' end)::"char", c.relowner)))::text
           order by 1), ',')
       || format(' row security %s forced %s', c.relrowsecurity, c.relforcerowsecurity)
from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname in ('data', 'api')
union all
select format('privileges on column %s.%s', a.attrelid::regclass, a.attname),
       array_to_string(array(select unnest(a.attacl)::text order by 1), ',')
from pg_attribute a join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname in ('data', 'api') and a.attacl is not null
union all
select 'privileges on schema ' || nspname,
       array_to_string(array(select unnest(coalesce(
           nspacl, acldefault('n'::"char", nspowner)))::text order by 1), ',')
from pg_namespace where nspname in ('data', 'api')
union all
select format('rule %s on %s', r.rulename, c.oid::regclass), pg_get_ruledef(r.oid)
from pg_rewrite r join pg_class c on c.oid = r.ev_class
join pg_namespace n on n.oid = c.relnamespace
where n.nspname in ('data', 'api') and c.relkind in ('r', 'p')
union all
select format('default privileges of %s in %s on %s', d.defaclrole::regrole,
              d.defaclnamespace::regnamespace, d.defaclobjtype),
       array_to_string(array(select unnest(d.defaclacl)::text order by 1), ',')
from pg_default_acl d
"""

NAMED = {
    "function": re.compile(r"^create or replace function ([\w.]+)\(", re.M),
    "policy": re.compile(r"^create policy (\w+) on ([\w.]+)", re.M),
    "trigger": re.compile(r"^create or replace trigger (\w+)\b.*?\bon ([\w.]+)", re.M | re.S),
}
CREATED = re.compile(r"^\s*create\s+(?:or\s+replace\s+)?(function|policy|trigger)\b", re.I | re.M)
GRANTED = re.compile(r"^\s*(grant|revoke)\b", re.I | re.M)
# Row-level security switched on: only policies.sql does that (a migrate refuses a table it is on
# for that no definition file names). A migration may lift the forcing to rewrite rows as the
# owner, and force it again on that table (gateway.data.migrate).
ROW_SECURITY = re.compile(r"\b(no\s+)?(enable|force)\s+row\s+level\s+security\b", re.I)
ALTERED = re.compile(r"\balter\s+table\s+(?:if\s+exists\s+)?(?:only\s+)?([\w.\"]+)\s+$", re.I)
COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)


def _row_security_switched_on(sql: str) -> list[str]:
    """The clauses of ``sql`` that enable or force row-level security, comments aside, but for
    forcing it again on a table the same text lifted it on."""
    code = COMMENT.sub(" ", sql)
    lifted: set[str] = set()
    found = []
    for match in ROW_SECURITY.finditer(code):
        altered = ALTERED.search(code[: match.start()])
        table = altered.group(1).lower() if altered else "?"
        if match.group(1):
            lifted |= {table} - {"?"}  # lifted on a table named alone
        elif match.group(2).lower() != "force" or table not in lifted:
            found.append(f"{' '.join(match.group(0).lower().split())} on {table}")
    return found


def _in_files() -> dict[str, set[str]]:
    """What the files define, by kind: functions by name, policies and triggers with their table."""
    text = "\n".join(sql for _, sql in available_definitions().files)
    return {
        "function": set(NAMED["function"].findall(text)),
        "policy": {f"{name} on {table}" for name, table in NAMED["policy"].findall(text)},
        "trigger": {f"{name} on {table}" for name, table in NAMED["trigger"].findall(text)},
    }


async def _catalog(connection: asyncpg.Connection) -> dict[str, str]:
    return {row["name"]: row["definition"] for row in await connection.fetch(CATALOG)}


def _names(catalog: dict[str, str], kind: str) -> set[str]:
    found = {name.removeprefix(kind + " ") for name in catalog if name.startswith(kind + " ")}
    if kind == "function":
        return {name.split("(")[0] for name in found}
    return found


def _on_scratch(env, work: Callable[[str, str], Awaitable[Any]]) -> Any:
    """Run ``work(superuser URL, owner URL)`` on a new empty database owned by the owner role."""
    name = f"gateway_defs_{uuid.uuid4().hex[:8]}"

    async def run() -> Any:
        admin = await asyncpg.connect(env.admin_url)
        try:
            await admin.execute(f'create database "{name}" owner {OWNER}')
            admin_url = env.admin_url.rsplit("/", 1)[0] + f"/{name}"
            try:
                # The server trusts loopback connections (tests only): the owner logs in by name.
                return await work(admin_url, with_credentials(admin_url, OWNER, "x", database=name))
            finally:
                await admin.execute(f'drop database if exists "{name}" with (force)')
        finally:
            await admin.close()

    return asyncio.run(run())


async def _connect(url: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(url)
    await connection.execute("set statement_timeout = '60s'")  # a stall fails, never hangs
    return connection


def _fresh_catalog(env) -> dict[str, str]:
    async def work(_admin_url: str, owner_url: str) -> dict[str, str]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            return await _catalog(connection)
        finally:
            await connection.close()

    return _on_scratch(env, work)


@pytest.fixture(scope="module")
def fresh_catalog(env) -> dict[str, str]:
    return _fresh_catalog(env)


def test_the_files_are_the_areas_and_hold_only_definitions():
    assert sorted(path.stem for path in SQL.glob("*.sql")) == sorted(AREAS)
    for path in SQL.glob("*.sql"):  # no subtransaction, which the stale sweep would misread
        assert not re.search(r"^\s*do\b", path.read_text(), re.I | re.M), path.name
    for path in MIGRATIONS.glob("*.sql"):  # history keeps tables, indexes and data only
        text = path.read_text()
        assert CREATED.findall(text) == [], path.name
        assert GRANTED.findall(text) == [], path.name
        assert _row_security_switched_on(text) == [], path.name
    # (What the check finds and what it lets through.)
    assert _row_security_switched_on(
        "-- alter table data.x enable row level security\n"
        "alter table data.x no force row level security; update data.x set n = 1;\n"
        "alter table data.x force row level security;\n"
        "alter table data.y add column n int, force row level security;\n"
        "ALTER TABLE data.z\n  ENABLE ROW LEVEL SECURITY;"
    ) == ["force row level security on ?", "enable row level security on data.z"]


def test_a_fresh_database_holds_exactly_the_definitions_in_the_files(env, fresh_catalog):
    files = _in_files()
    for kind in ("function", "policy", "trigger"):
        assert _names(fresh_catalog, kind) == files[kind], kind
    # One definition of each: no function is created twice anywhere in the repository's SQL.
    created = [
        name
        for path in [*SQL.glob("*.sql"), *MIGRATIONS.glob("*.sql")]
        for name in NAMED["function"].findall(path.read_text())
    ]
    assert sorted(created) == sorted(files["function"])  # and each name has one signature
    assert len(_names(fresh_catalog, "function")) == sum(
        name.startswith("function ") for name in fresh_catalog
    )
    assert "api.consultations_page" in files["function"]


def test_applying_the_files_again_changes_no_definition(env):
    """The catalog is a fixpoint of the files: each function, policy, trigger and privilege is
    exactly what its statement makes."""

    async def work(_admin_url: str, owner_url: str) -> tuple[dict[str, str], dict[str, str]]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            before = await _catalog(connection)
            async with connection.transaction():
                await write_definitions(connection, available_definitions())
                after = await _catalog(connection)
            return before, after
        finally:
            await connection.close()

    before, after = _on_scratch(env, work)
    assert after == before


def test_a_database_of_the_last_release_with_data_ends_with_the_same_definitions(
    env, fresh_catalog
):
    """Migrated as the last release migrated it (its texts, its definitions), seeded and audited,
    then migrated by this gateway: the same catalog as a fresh database, nothing lost, the audit
    trail intact, and the applied migrations recorded with this gateway's checksums."""
    released = released_migrations()
    later = [m.version for m in available_migrations()][len(released) :]
    assert [m.version for m in released] == [m.version for m in available_migrations()][
        : len(released)
    ]

    async def work(admin_url: str, owner_url: str) -> dict[str, Any]:
        connection = await _connect(owner_url)
        try:
            await migrate_as_released(connection)
            superuser = await _connect(admin_url)
            try:
                await seed_database(superuser, SeedPlan(patients=4, clinicians=2), "urn:test")
                events = json.dumps(
                    [
                        {
                            "request_id": "before-upgrade",
                            "kind": "disclosure",
                            "issuer": "urn:test",
                            "subject": "s",
                            "role": "support",
                            "objects": [{"type": "Consultation", "id": str(n), "fields": ["id"]}],
                        }
                        for n in range(3)
                    ]
                )
                await superuser.execute(RECORD_ACCESS_EVENTS, events, [])
                tables = ("patients", "consultations", "recordings", "accounts", "access_events")
                counts = [
                    await superuser.fetchval(f"select count(*) from data.{t}") for t in tables
                ]
                released_catalog = await _catalog(connection)
                applied = await apply_migrations(connection)
                again = await apply_migrations(connection)
                return {
                    "released": released_catalog,
                    "upgraded": await _catalog(connection),
                    "applied": applied,
                    "again": again,
                    "counts": counts,
                    "counts after": [
                        await superuser.fetchval(f"select count(*) from data.{t}") for t in tables
                    ],
                    "chain": await verify_chain(superuser),
                    "checksums": dict(
                        await connection.fetch("select version, checksum from schema_migrations")
                    ),
                }
            finally:
                await superuser.close()
        finally:
            await connection.close()

    result = _on_scratch(env, work)
    assert result["applied"] == [*later, DEFINITIONS] and result["again"] == []
    assert result["upgraded"] == fresh_catalog
    assert result["counts after"] == result["counts"] and result["counts"][-1] == 3
    assert result["chain"].intact and result["chain"].events == 3
    assert result["checksums"] == {m.version: m.checksum for m in available_migrations()}
    # What the upgrade changed: the release's two functions nothing calls any more are gone
    # (the audit write without ids, and the hash of the chain before 0012); nothing else moved.
    gone = set(result["released"]) - set(result["upgraded"])
    assert gone == {
        "function api.record_access_events(jsonb)",
        "function data.access_event_hash(bytea,data.access_events)",
    }
    # and what the later migrations (0021: the trail's partitions, archive catalog and
    # checkpoints; 0022: the checkpoints kept, each a row) and their definitions added.
    added = set(result["upgraded"]) - set(result["released"])
    assert added == {
        "function data.create_access_event_partitions(integer)",
        "function data.record_audit_checkpoint(integer,bigint,bytea)",
        "function data.refuse_archive_change()",
        "policy access_event_operator_append on data.access_events",
        "relation data.audit_archives",
        "relation data.audit_archives_id_seq",
        "relation data.audit_archives_partition_name_key",
        "relation data.audit_archives_pkey",
        "relation data.audit_checkpoints",
        "relation data.audit_checkpoints_pkey",
        "relation data.audit_checkpoints_id_seq",
        "relation data.audit_checkpoints_by_chain",
        "function data.refuse_checkpoint_change()",
        "trigger audit_checkpoints_append_only on data.audit_checkpoints",
        "trigger audit_checkpoints_no_truncate on data.audit_checkpoints",
        "relation data.restored_access_events",
        "relation data.restored_access_events_by_patient",
        "trigger audit_archives_append_only on data.audit_archives",
        "trigger audit_archives_no_truncate on data.audit_archives",
    }
    assert {k: v for k, v in result["released"].items() if k not in gone} == {
        k: v for k, v in fresh_catalog.items() if k not in added
    }


@pytest.mark.parametrize(
    "by_hand",
    [
        # a loader that forgets its predicate
        "create or replace function api.scope_role() returns text language sql stable "
        "parallel safe as $$ select 'support' $$",
        # a policy that opens every patient
        "drop policy patient_rows on data.patients; create policy patient_rows on data.patients "
        "for select to gateway_app using (true)",
        # a privilege nobody granted in the files
        "grant select on data.accounts to gateway_app",
        # row-level security no longer binding the owner
        "alter table data.patients no force row level security",
        # an append-only trigger disabled
        "alter table data.access_events disable trigger access_events_append_only",
        # PUBLIC (of which the application's login role is a member) reading the accounts
        "grant select on data.accounts to public",
        "grant usage on schema data to public",
        # a column of the accounts to the audit reader
        "grant select (subject) on data.accounts to gateway_audit_reader",
        # the application calling what only the owner's triggers call
        "grant execute on function data.access_event_chain_hash(bytea, data.access_events) "
        "to gateway_app",
        # every table made from now on readable by PUBLIC
        "alter default privileges in schema data grant select on tables to public",
        # a function that had PostgreSQL's own privileges, given to one more role
        "grant execute on function data.canonical_field(text) to gateway_audit_reader",
        # the owner narrowing its own privileges: a table's, a sequence's, a function's, a
        # schema's (a trigger's creation needs TRIGGER on its table, a function's CREATE on its
        # schema)
        "revoke insert on data.clinicians from gateway_owner",
        "revoke trigger on data.accounts from gateway_owner",
        "revoke usage on sequence data.access_events_id_seq from gateway_owner",
        "revoke execute on function api.scope_role() from gateway_owner",
        "revoke create on schema api from gateway_owner",
        # ... on a function of its own, which the files do not define: given back, still dropped
        "create function api.everything_else() returns setof data.accounts language sql "
        "as $$ select * from data.accounts $$; "
        "revoke execute on function api.everything_else() from gateway_owner",
        # whatever the owner makes from now on, anywhere, open to the application or to PUBLIC
        "alter default privileges grant select on tables to gateway_app",
        "alter default privileges grant select on tables to public",
        "alter default privileges grant execute on functions to gateway_audit_reader",
        # a rule that swallows the audit trail's inserts
        "create rule swallow as on insert to data.access_events do instead nothing",
        # a function of its own in the api schema
        "create function api.everything() returns setof data.patients language sql "
        "as $$ select * from data.patients $$",
    ],
)
def test_a_definition_changed_by_hand_is_put_back_by_the_next_migrate(env, by_hand):
    async def work(_admin_url: str, owner_url: str) -> tuple[dict[str, str], ...]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            expected = await _catalog(connection)
            await connection.execute(by_hand)
            changed = await _catalog(connection)
            applied = await apply_migrations(connection)
            return expected, changed, await _catalog(connection), applied
        finally:
            await connection.close()

    expected, changed, after, applied = _on_scratch(env, work)
    assert changed != expected
    assert applied == [DEFINITIONS]
    assert after == expected


LOCKS = """
select c.oid::regclass::text as relation, l.mode
from pg_locks l join pg_class c on c.oid = l.relation
join pg_namespace n on n.oid = c.relnamespace
where l.pid = pg_backend_pid() and n.nspname in ('data', 'api') and c.relkind in ('r', 'p')
"""
STRENGTH = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
]


def test_applying_changed_definitions_locks_the_tables_with_policies_or_triggers_and_no_other(
    env,
):
    """What a migrate that changes definitions holds until it commits: ACCESS EXCLUSIVE (which
    stalls reads) on each table with row-level security policies, to drop and create them; SHARE
    ROW EXCLUSIVE (which stalls writes, not reads) on each other table with triggers; ACCESS
    SHARE, which stalls nobody, where a function's body is checked. Privileges take no table
    lock."""

    async def work(_admin_url: str, owner_url: str) -> dict[str, str]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            async with connection.transaction():
                await write_definitions(connection, available_definitions())
                held: dict[str, str] = {}
                for row in await connection.fetch(LOCKS):
                    before = held.get(row["relation"], row["mode"])
                    held[row["relation"]] = max(row["mode"], before, key=STRENGTH.index)
                return held
        finally:
            await connection.close()

    held = _on_scratch(env, work)
    assert held == {
        **{
            table: "AccessExclusiveLock"
            for table in (
                "data.access_events",
                "data.break_glass_grants",
                "data.consent_requests",
                "data.consents",
                "data.consultations",
                "data.patients",
                "data.recordings",
            )
        },
        **{
            table: "ShareRowExclusiveLock"
            for table in (
                "data.accounts",
                "data.audit_archives",
                "data.audit_checkpoints",
                "data.audit_field_sets",
                "data.partners",
            )
        },
        # read while the SQL functions' bodies are checked (clinicians_by_id): blocks no one
        "data.clinicians": "AccessShareLock",
    }


def test_an_up_to_date_migrate_takes_no_lock_a_reader_or_a_writer_would_notice(env):
    """With another session holding EXCLUSIVE on every table of data (no one else can write,
    everyone can still read), the migrate of an up-to-date database still finishes: it reads the
    catalog (deparsing a policy takes ACCESS SHARE on its table, as any reader does) and changes
    nothing."""

    async def work(_admin_url: str, owner_url: str) -> tuple[list[str], str]:
        connection = await _connect(owner_url)
        holder = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            async with holder.transaction():
                await holder.execute(
                    "do $$ declare t regclass; begin for t in select c.oid from pg_class c "
                    "join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'data' "
                    "and c.relkind = 'r' loop execute format('lock table %s in exclusive mode', t);"
                    " end loop; end $$"
                )
                await connection.execute("set lock_timeout = '2s'")
                applied = await apply_migrations(connection)
                return applied, await catalog_digest(connection)
        finally:
            await holder.close()
            await connection.close()

    applied, digest = _on_scratch(env, work)
    assert applied == [] and len(digest) == 32


def test_a_migrate_behind_a_long_reader_gives_up_each_wait_and_leaves_everything_in_place(env):
    """A reader holds the patients' table (a long report). A migrate that must recreate the
    policies waits at most its lock wait per attempt for all its locks, so that readers queued
    behind it are held back no longer than that, and after its last attempt fails with every
    definition as it was; once the reader ends, the migrate goes through."""

    async def work(_admin_url: str, owner_url: str) -> tuple[Any, ...]:
        connection = await _connect(owner_url)
        reader = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            expected = await _catalog(connection)
            # As after a deploy that changed the policies file:
            await connection.execute(
                "update public.schema_definitions set checksum = 'older', policies = 'older'"
            )
            async with reader.transaction():
                await reader.execute("select count(*) from data.patients")
                with pytest.raises(ConfigurationError) as refused:
                    await apply_definitions(connection, lock_wait=0.05, attempts=3)
                during = await _catalog(connection)
            applied = await apply_definitions(connection, lock_wait=0.05, attempts=3)
            return refused.value, expected, during, applied, await _catalog(connection)
        finally:
            await reader.close()
            await connection.close()

    refused, expected, during, applied, after = _on_scratch(env, work)
    assert str(refused) == (
        "the definitions could not take their table locks in 3 attempts of 0.05 s each (a table "
        "lock was not free within the wait (canceling statement due to statement timeout)); "
        "nothing was changed: run `gateway migrate` again"
    )
    assert during == expected  # rolled back whole: no table was ever without its policies
    assert applied is True and after == expected


def test_the_catalog_digest_does_not_depend_on_the_search_path(env):
    async def work(_admin_url: str, owner_url: str) -> tuple[str, str, bool]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            plain = await catalog_digest(connection)
            await connection.execute("set search_path = data, api, public")
            return plain, await catalog_digest(connection), await definitions_current(connection)
        finally:
            await connection.close()

    plain, searched, current = _on_scratch(env, work)
    assert plain == searched and current


def test_applying_inside_another_transaction_is_refused(env):
    """The stale sweep knows what this transaction wrote by its transaction id; inside another
    transaction (a savepoint) it would take everything for stale."""

    async def work(_admin_url: str, owner_url: str) -> str:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            async with connection.transaction():
                with pytest.raises(RuntimeError) as refused:
                    await apply_definitions(connection)
            return str(refused.value)
        finally:
            await connection.close()

    assert _on_scratch(env, work) == (
        "apply_definitions runs in a transaction of its own, not inside one"
    )


def test_a_released_migration_edited_since_is_refused_on_a_database_of_the_release(
    env, monkeypatch
):
    """A database of the last release applied 0003 as released; this gateway accepts that only
    while 0003's file holds exactly the text released.sha256 names, so that a later edit of an
    old migration cannot slip past the databases still at the release."""
    import gateway.data.migrate as migrate

    edited = [
        replace(m, sql=m.sql + "\ncreate table data.sneaky (id int);\n")
        if m.version == "0003_every_role"
        else m
        for m in available_migrations()
    ]
    monkeypatch.setattr(migrate, "available_migrations", lambda: edited)

    async def work(_admin_url: str, owner_url: str) -> str:
        connection = await _connect(owner_url)
        try:
            await migrate_as_released(connection)
            with pytest.raises(ConfigurationError) as refused:
                await apply_migrations(connection)
            return str(refused.value)
        finally:
            await connection.close()

    assert _on_scratch(env, work) == "migration 0003_every_role was changed after it was released"


def test_a_database_a_superuser_migrated_with_definitions_is_handed_over_whole(env):
    """A superuser migrated the release and then this gateway (so it owns the definitions'
    bookkeeping too); once handed over, the owner migrates alone."""

    async def work(admin_url: str, owner_url: str) -> tuple[list[str], list[str], list[str]]:
        superuser = await _connect(admin_url)
        connection = await _connect(owner_url)
        try:
            await migrate_as_released(superuser)
            first = await apply_migrations(superuser)
            await hand_over(superuser, OWNER)
            return first, await apply_migrations(connection), await apply_migrations(connection)
        finally:
            await connection.close()
            await superuser.close()

    first, handed, again = _on_scratch(env, work)
    assert first == ["0021_audit_partitions", "0022_audit_months_alone", DEFINITIONS]
    assert again == []
    # The owner's grants now come from the owner (the grantor moved with the objects): the
    # definitions are applied once more, by the owner, whose bookkeeping it now is.
    assert handed == [DEFINITIONS]


def test_the_administration_commands_send_a_database_of_the_release_to_migrate(env):
    from gateway.data.administration import check_migrated

    async def work(_admin_url: str, owner_url: str) -> str:
        connection = await _connect(owner_url)
        try:
            await migrate_as_released(connection)
            with pytest.raises(ConfigurationError) as refused:
                await check_migrated(connection)
            return str(refused.value)
        finally:
            await connection.close()

    assert _on_scratch(env, work) == (
        "the database lacks migrations 0021_audit_partitions, 0022_audit_months_alone: run "
        "`gateway migrate` first"
    )


@pytest.mark.parametrize(
    ("by_hand", "readers_wait"),
    [
        # a function body: the policies are left in place, no reader waits
        (
            "create or replace function api.scope_role() returns text language sql stable "
            "parallel safe as $$ select 'support' $$",
            False,
        ),
        # a policy: it is made again, which readers of its table wait for
        (
            "drop policy patient_rows on data.patients; create policy patient_rows on "
            "data.patients for select to gateway_app using (true)",
            True,
        ),
    ],
)
def test_only_a_change_of_the_policies_makes_readers_wait(env, by_hand, readers_wait):
    """A reader holds the patients' table in an open transaction. Putting back a function body
    needs no lock it conflicts with: the migrate goes through beside it. Putting back a policy
    needs ACCESS EXCLUSIVE, which waits for the reader: the migrate gives up."""

    async def work(_admin_url: str, owner_url: str) -> tuple[Any, dict[str, str], dict[str, str]]:
        connection = await _connect(owner_url)
        reader = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            expected = await _catalog(connection)
            await connection.execute(by_hand)
            async with reader.transaction():
                await reader.execute("select count(*) from data.patients")
                try:
                    outcome: Any = await apply_definitions(connection, lock_wait=0.05, attempts=2)
                except ConfigurationError as refused:
                    outcome = refused
            return outcome, expected, await _catalog(connection)
        finally:
            await reader.close()
            await connection.close()

    outcome, expected, after = _on_scratch(env, work)
    if readers_wait:
        assert isinstance(outcome, ConfigurationError) and after != expected
    else:
        assert outcome is True and after == expected


def test_a_policy_changed_while_a_migrate_decides_is_put_back(env, monkeypatch):
    """Between the migrate's first look (definitions changed: a function body) and its
    transaction, another session opens every patient. The decision to leave the policies in
    place is taken inside the transaction, under locks that keep policies from changing, so it
    sees the change and makes the policies again."""
    import gateway.data.definitions as definitions

    async def work(_admin_url: str, owner_url: str) -> tuple[dict[str, str], dict[str, str]]:
        connection = await _connect(owner_url)
        other = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            expected = await _catalog(connection)
            await connection.execute(
                "create or replace function api.scope_role() returns text language sql stable "
                "parallel safe as $$ select 'support' $$"
            )
            first_look = definitions.definitions_current

            async def then_race(*args: Any, **kwargs: Any) -> bool:
                current = await first_look(*args, **kwargs)
                await other.execute("alter policy patient_rows on data.patients using (true)")
                return current

            monkeypatch.setattr(definitions, "definitions_current", then_race)
            assert await apply_definitions(connection) is True
            monkeypatch.setattr(definitions, "definitions_current", first_look)
            return expected, await _catalog(connection)
        finally:
            await other.close()
            await connection.close()

    expected, after = _on_scratch(env, work)
    assert after == expected


def test_a_database_whose_bookkeeping_predates_the_policies_key_is_applied_whole(env):
    async def work(_admin_url: str, owner_url: str) -> tuple[bool, bool]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            await connection.execute("alter table public.schema_definitions drop column policies")
            await connection.execute("update public.schema_definitions set checksum = 'older'")
            applied = await apply_definitions(connection)
            return applied, await definitions_current(connection)
        finally:
            await connection.close()

    assert _on_scratch(env, work) == (True, True)


def test_an_application_does_not_alter_the_bookkeeping_it_finds_complete(env):
    """The bookkeeping already has the policies column: an application writes its row and takes
    no ACCESS EXCLUSIVE on the table (ADD COLUMN IF NOT EXISTS would, column or not), which
    would queue every session reading it behind the migrate, another pod's first look
    included."""

    async def work(_admin_url: str, owner_url: str) -> set[str]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            async with connection.transaction():
                await write_definitions(connection, available_definitions())
                rows = await connection.fetch(
                    "select mode from pg_locks where pid = pg_backend_pid() "
                    "and relation = 'public.schema_definitions'::regclass"
                )
                return {row["mode"] for row in rows}
        finally:
            await connection.close()

    assert _on_scratch(env, work) == {"RowExclusiveLock"}


@pytest.mark.parametrize(
    ("by_hand", "table", "secured"),
    [
        # a table made with row-level security, whose lines policies.sql lacks (as a migration
        # written before them would make it)
        (
            "create table data.notes (patient_id uuid, note text); "
            "alter table data.notes enable row level security; "
            "alter table data.notes force row level security",
            "data.notes",
            (True, True),
        ),
        # row-level security on tables that have none: nobody would see a clinician, and
        # api.account_for (as the owner) no account
        ("alter table data.clinicians enable row level security", "data.clinicians", (True, False)),
        ("alter table data.accounts force row level security", "data.accounts", (False, True)),
    ],
)
def test_row_level_security_no_file_enables_is_refused_and_left_on(env, by_hand, table, secured):
    """The attack: row-level security is switched on for a table policies.sql does not name (a
    migration that secures a new table of patient data ahead of its policies). A migrate that put
    that back by switching it off would open the table to whoever holds a grant on it; instead
    the migrate refuses, naming the table, and the table keeps its row-level security and every
    definition stays as it was."""

    async def work(_admin_url: str, owner_url: str) -> tuple[Any, ...]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            await connection.execute(by_hand)
            before = await _catalog(connection)
            with pytest.raises(ConfigurationError) as refused:
                await apply_migrations(connection)
            row = await connection.fetchrow(
                "select relrowsecurity, relforcerowsecurity from pg_class where oid = $1::regclass",
                table,
            )
            return str(refused.value), before, await _catalog(connection), tuple(row)
        finally:
            await connection.close()

    refused, before, after, left = _on_scratch(env, work)
    assert refused == (
        f"row-level security is enabled or forced on {table}, but no definition file enables it "
        "there: add the table's lines to src/gateway/data/sql/policies.sql (or, if it is not "
        "wanted, switch it off: ALTER TABLE ... NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL "
        "SECURITY), then run `gateway migrate` again; nothing was changed"
    )
    assert after == before
    assert left == secured  # as the hand left it


# A function body changed by hand: put back without touching the policies (the light path).
FUNCTION_BY_HAND = (
    "create or replace function api.scope_role() returns text language sql stable "
    "parallel safe as $$ select 'support' $$"
)
# The table locks this session holds in data and api, the strongest on each, names unquoted.
HELD = """
select n.nspname || '.' || c.relname as relation, l.mode
from pg_locks l join pg_class c on c.oid = l.relation
join pg_namespace n on n.oid = c.relnamespace
where l.pid = pg_backend_pid() and n.nspname in ('data', 'api') and c.relkind in ('r', 'p')
"""


async def _held(connection: asyncpg.Connection) -> dict[str, str]:
    held: dict[str, str] = {}
    for row in await connection.fetch(HELD):
        before = held.get(row["relation"], row["mode"])
        held[row["relation"]] = max(row["mode"], before, key=STRENGTH.index)
    return held


def test_quote_all_identifiers_changes_no_lock_a_migrate_takes(env):
    """With quote_all_identifiers on (a session's, a role's or the database's setting), every name
    the catalog writes out is quoted. Putting back a function body still locks each table with
    triggers SHARE ROW EXCLUSIVE, exactly as without the setting: a table is not taken for one
    with a trigger the files do not make and locked ACCESS EXCLUSIVE, and the migrate goes
    through beside a reader of a table with triggers; the next finds nothing to do."""

    async def work(_admin_url: str, owner_url: str) -> tuple[Any, ...]:
        connection = await _connect(owner_url)
        reader = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            await connection.execute(FUNCTION_BY_HAND)
            held, policies = {}, {}
            for quoting in ("off", "on"):
                await connection.execute(f"set quote_all_identifiers = {quoting}")
                async with connection.transaction():
                    deadline = asyncio.get_running_loop().time() + 5
                    policies[quoting], _ = await lock_tables(
                        connection, available_definitions(), deadline
                    )
                    held[quoting] = await _held(connection)
            async with reader.transaction():
                await reader.execute("select count(*) from data.accounts")
                applied = await apply_definitions(connection, lock_wait=0.05, attempts=2)
            return held, policies, applied, await apply_definitions(connection)
        finally:
            await reader.close()
            await connection.close()

    held, policies, applied, again = _on_scratch(env, work)
    assert policies == {"off": False, "on": False}
    assert held["on"] == held["off"]
    assert held["on"]["data.accounts"] == "ShareRowExclusiveLock"
    assert "AccessExclusiveLock" not in held["on"].values()
    assert applied is True and again is False


def test_a_table_with_a_rule_is_locked_before_the_rule_is_dropped(env):
    """A rule made by hand on a table with no policy, row-level security or trigger (the
    clinicians). Dropping it needs ACCESS EXCLUSIVE: the migrate takes that with its other locks,
    up front and within its wait, not halfway through its transaction behind whoever reads the
    table."""

    async def work(_admin_url: str, owner_url: str) -> tuple[bool, dict[str, str]]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            await connection.execute(
                "create rule swallow as on insert to data.clinicians do instead nothing"
            )
            async with connection.transaction():
                deadline = asyncio.get_running_loop().time() + 5
                policies, _ = await lock_tables(connection, available_definitions(), deadline)
                return policies, await _held(connection)
        finally:
            await connection.close()

    policies, held = _on_scratch(env, work)
    assert policies is True
    assert held["data.clinicians"] == "AccessExclusiveLock"


@pytest.mark.parametrize(
    "hardening",
    [
        # what PostgreSQL gives PUBLIC on whatever the owner makes from now on, taken away
        "alter default privileges for role gateway_owner revoke execute on functions from public",
        "alter default privileges for role gateway_owner revoke usage on types from public",
        # the owner narrowing what it gives itself
        "alter default privileges for role gateway_owner revoke truncate on tables "
        "from gateway_owner",
    ],
)
def test_a_dba_hardening_the_owners_default_privileges_keeps_it(env, hardening):
    """A DBA narrows the owner's default privileges in every schema, PUBLIC's or its own: no
    definition of the files, and nothing anyone gains. A migrate that applies the definitions
    (here to put back a function body) leaves it as the DBA left it, refuses nothing, and the
    next migrate finds nothing to do."""

    async def work(_admin_url: str, owner_url: str) -> tuple[Any, ...]:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            await connection.execute(hardening)
            defaults = "select defaclobjtype, defaclacl::text[] from pg_default_acl order by 1"
            hardened = await connection.fetch(defaults)
            await connection.execute(FUNCTION_BY_HAND)
            applied = await apply_migrations(connection)
            digest = await catalog_digest(connection)
            return (
                hardened,
                applied,
                await connection.fetch(defaults),
                await apply_migrations(connection),
                digest,
                await catalog_digest(connection),
            )
        finally:
            await connection.close()

    hardened, applied, after, again, digest, digest_again = _on_scratch(env, work)
    assert len(hardened) == 1
    assert applied == [DEFINITIONS] and after == hardened
    assert again == [] and digest_again == digest


def test_another_roles_default_privileges_in_data_are_refused_with_what_to_run(env):
    """A superuser gave the application, by default, every table the audit reader makes in data.
    The owner cannot take that away (only that role's members and superusers may change its
    default privileges): the migrate refuses, changing nothing, and says what a superuser must
    run; once that has run, the migrate has nothing left to do."""

    async def work(admin_url: str, owner_url: str) -> tuple[str, list[str]]:
        connection = await _connect(owner_url)
        superuser = await _connect(admin_url)
        try:
            await apply_migrations(connection)
            await superuser.execute(
                "alter default privileges for role gateway_audit_reader in schema data "
                "grant select on tables to gateway_app"
            )
            with pytest.raises(ConfigurationError) as refused:
                await apply_migrations(connection)
            await superuser.execute(
                "alter default privileges for role gateway_audit_reader in schema data "
                "revoke all on tables from gateway_app"
            )
            return str(refused.value), await apply_migrations(connection)
        finally:
            await superuser.close()
            await connection.close()

    refused, then = _on_scratch(env, work)
    assert refused == (
        "default privileges of another role remain in data or api, which only a superuser (or a "
        "member of that role) may take away: as a superuser, run `alter default privileges for "
        "role gateway_audit_reader in schema data revoke all on tables from gateway_app;`, then "
        "run `gateway migrate` again; nothing was changed"
    )
    assert then == []


def test_taking_the_locks_leaves_the_statement_timeout_as_it_was(env):
    """Each LOCK runs under a statement_timeout of what is left of the wait; afterwards the
    transaction's own timeout is back (it was set to none: the rest of the application ran
    without the timeout its session asked for)."""

    async def work(_admin_url: str, owner_url: str) -> str:
        connection = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            async with connection.transaction():
                await connection.execute("set local statement_timeout = '42s'")
                deadline = asyncio.get_running_loop().time() + 5
                await lock_tables(connection, available_definitions(), deadline)
                timeout: str = await connection.fetchval("show statement_timeout")
                return timeout
        finally:
            await connection.close()

    assert _on_scratch(env, work) == "42s"


def test_a_migrate_an_operator_cancels_stops_and_is_not_tried_again(env):
    """A migrate waits for its locks behind a reader; an operator cancels it (pg_cancel_backend).
    That is no lock wait giving way: the migrate stops at once with the cancel, changing
    nothing, rather than trying again and again."""

    async def work(_admin_url: str, owner_url: str) -> tuple[Any, ...]:
        connection = await _connect(owner_url)
        reader = await _connect(owner_url)
        operator = await _connect(owner_url)
        try:
            await apply_migrations(connection)
            expected = await _catalog(connection)
            await connection.execute(  # as after a deploy that changed the policies file
                "update public.schema_definitions set checksum = 'older', policies = 'older'"
            )
            pid = connection.get_server_pid()
            loop = asyncio.get_running_loop()
            async with reader.transaction():
                await reader.execute("select count(*) from data.patients")
                started = loop.time()
                migrate = asyncio.create_task(
                    apply_definitions(connection, lock_wait=2.0, attempts=3)
                )
                waiting = "select exists (select from pg_locks where pid = $1 and not granted)"
                for _ in range(150):  # until it waits for a lock (1.5 s at most)
                    if await operator.fetchval(waiting, pid):
                        break
                    await asyncio.sleep(0.01)
                await operator.execute("select pg_cancel_backend($1)", pid)
                with pytest.raises(asyncpg.QueryCanceledError) as stopped:
                    await migrate
                took = loop.time() - started
            return str(stopped.value), took, expected, await _catalog(connection)
        finally:
            await operator.close()
            await reader.close()
            await connection.close()

    stopped, took, expected, after = _on_scratch(env, work)
    assert stopped == "canceling statement due to user request"
    assert took < 2.0  # within the first attempt's wait
    assert after == expected


def test_a_failed_digest_inside_a_transaction_raises_its_own_error(env, monkeypatch):
    """The digest's query fails inside a transaction (here a statement that divides by zero):
    the error raised is that one, not the one putting the session's settings back would raise
    in the aborted transaction; the rollback puts them back."""
    import gateway.data.definitions as definitions

    async def work(_admin_url: str, owner_url: str) -> tuple[type[BaseException], str]:
        connection = await _connect(owner_url)
        try:
            await connection.execute("set search_path = public")
            monkeypatch.setattr(definitions, "_CATALOG", "select 1 / 0 as everything, 0")
            with pytest.raises(asyncpg.PostgresError) as failed:
                async with connection.transaction():
                    await definitions.catalog_digests(connection)
            search_path: str = await connection.fetchval("show search_path")
            return failed.type, search_path
        finally:
            await connection.close()

    assert _on_scratch(env, work) == (asyncpg.DivisionByZeroError, "public")
