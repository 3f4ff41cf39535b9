"""Least privilege in the database: migrations run as the database's owner, a role that is neither
SUPERUSER, BYPASSRLS nor CREATEROLE (on PostgreSQL 15 nearly a superuser), on a fresh database
(every test's: ``provision``) and on one a superuser migrated before (handed over once, then
migrated by the owner); the owner cannot make itself more; the audit verifier's role reads the
trail and nothing else."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import asyncpg
import pytest

from gateway.data.migrate import DEFINITIONS, available_migrations
from gateway.data.queries import RECORD_ACCESS_EVENTS
from gateway.dev.embedded import OWNER, with_credentials
from gateway.dev.seed import SeedPlan, seed_database
from tests.support.database import as_admin, connected
from tests.support.gateway_process import run_gateway
from tests.support.released import migrate_as_released

# Everything the migrations made, with its owner, read from the catalog.
OWNERS = """
select 'schema ' || nspname as object, pg_get_userbyid(nspowner) as owner
from pg_namespace where nspname in ('data', 'api')
union all
select 'relation ' || c.oid::regclass, pg_get_userbyid(c.relowner)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where (n.nspname in ('data', 'api') or c.oid = 'public.schema_migrations'::regclass)
  and c.relkind in ('r', 'p', 'v', 'm', 'S', 'i')
union all
select 'function ' || p.oid::regprocedure, pg_get_userbyid(p.proowner)
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('data', 'api')
"""
# The release before migration 0019: the schema a superuser had migrated.
LAST_RELEASE = "0019"


def _owners(rows) -> dict[str, str]:
    return {row["object"]: row["owner"] for row in rows}


def test_the_owner_that_migrated_every_test_database_has_no_superuser_powers(env):
    role = as_admin(
        env,
        lambda c: c.fetchrow(
            "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles "
            "where rolname = $1",
            OWNER,
        ),
    )
    assert dict(role) == {
        "rolsuper": False,
        "rolbypassrls": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
    }
    owners = _owners(as_admin(env, lambda c: c.fetch(OWNERS)))
    # The whole schema was read: tables, indexes, the functions that run as their owner.
    assert {
        "relation data.access_events",
        "relation data.consultations_by_time",
        "function api.account_for(text,text)",
        "function data.chain_access_event()",
    } <= owners.keys()
    assert {owner for owner in owners.values()} == {OWNER}
    database_owner = as_admin(
        env,
        lambda c: c.fetchval(
            "select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
        ),
    )
    assert database_owner == OWNER


@pytest.mark.parametrize(
    ("attack", "statement", "refusal"),
    [
        (
            "grant itself a shell as the server's user (COPY ... TO PROGRAM)",
            f"grant pg_execute_server_program to {OWNER}",
            'must have admin option on role "pg_execute_server_program"',
        ),
        (
            "read the server's files",
            f"grant pg_read_server_files to {OWNER}",
            'must have admin option on role "pg_read_server_files"',
        ),
        (
            "take the gateway's login",
            "alter role gateway_app login password 'taken'",
            "permission denied",
        ),
        ("make a role", "create role intruder login", "permission denied to create role"),
        (
            "give itself BYPASSRLS",
            f"alter role {OWNER} bypassrls",
            "must be superuser to change bypassrls attribute",
        ),
        (
            "join the application role",
            f"grant gateway_app to {OWNER}",
            'must have admin option on role "gateway_app"',
        ),
    ],
)
def test_the_owner_cannot_make_itself_more(env, attack, statement, refusal):
    admin_url, owner_url = _scratch(env)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            connected(owner_url, lambda c: c.execute(statement))
        assert str(refused.value) == refusal, attack
    finally:
        _drop(env, admin_url)


def _scratch(env) -> tuple[str, str]:
    """A new database on the session's server: (superuser URL, owner URL)."""
    name = f"gateway_lp_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        admin = await asyncpg.connect(env.admin_url)
        try:
            await admin.execute(f'create database "{name}" owner {OWNER}')
        finally:
            await admin.close()

    asyncio.run(create())
    admin_url = env.admin_url.rsplit("/", 1)[0] + f"/{name}"
    # The server trusts loopback connections (tests only): the owner logs in by name.
    return admin_url, with_credentials(admin_url, OWNER, "unused", database=name)


def _drop(env, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    as_admin(env, lambda c: c.execute(f'drop database if exists "{name}" with (force)'))


def _events(request_id: str, count: int) -> str:
    return json.dumps(
        [
            {
                "request_id": request_id,
                "kind": "disclosure",
                "issuer": "urn:test",
                "subject": f"s{n}",
                "role": "support",
                "objects": [{"type": "Consultation", "id": str(n), "fields": ["id"]}],
            }
            for n in range(count)
        ]
    )


@pytest.fixture
def released(env):
    """A database a superuser migrated to the last release, with data and audit events in it."""
    admin_url, owner_url = _scratch(env)

    async def migrate_as_superuser() -> dict[str, int]:
        connection = await asyncpg.connect(admin_url)
        try:
            await migrate_as_released(connection, before=LAST_RELEASE)
            await seed_database(connection, SeedPlan(patients=3, clinicians=2), "urn:test")
            await connection.execute(RECORD_ACCESS_EVENTS, _events("before", 4), [])
            return await _counts(connection)
        finally:
            await connection.close()

    counts = asyncio.run(migrate_as_superuser())
    yield admin_url, owner_url, counts
    _drop(env, admin_url)


async def _counts(connection: asyncpg.Connection) -> dict[str, int]:
    tables = ("patients", "consultations", "recordings", "accounts", "access_events")
    return {t: await connection.fetchval(f"select count(*) from data.{t}") for t in tables}


def test_the_owner_cannot_migrate_a_database_a_superuser_owns_until_it_is_handed_over(
    env, released
):
    admin_url, owner_url, counts = released
    # The owner alone is refused before it changes anything, and told the way out.
    refused = run_gateway("migrate", "--database-url", owner_url)
    assert (refused.returncode, refused.stderr.strip()) == (
        2,
        "gateway: the schema belongs to postgres, a superuser: hand it over once, as that "
        f"superuser (gateway migrate --hand-over-to {OWNER})",
    )

    handed = run_gateway("migrate", "--database-url", admin_url, "--hand-over-to", OWNER)
    assert handed.returncode == 0, handed.stderr
    moved, applied = handed.stdout.strip().splitlines()
    assert moved.endswith(f"objects handed over to {OWNER}") and int(moved.split()[0]) > 50
    since = [m for m in available_migrations() if m.version >= LAST_RELEASE]
    assert applied == "applied: " + ", ".join([*(m.version for m in since), DEFINITIONS])
    assert since[0].version == "0019_audit_reader"

    async def after() -> tuple[dict[str, str], dict[str, int], list[str]]:
        connection = await asyncpg.connect(admin_url)
        try:
            return (
                _owners(await connection.fetch(OWNERS)),
                await _counts(connection),
                [r[0] for r in await connection.fetch("select version from schema_migrations")],
            )
        finally:
            await connection.close()

    owners, counts_after, versions = asyncio.run(after())
    assert {owner for owner in owners.values()} == {OWNER}
    assert counts_after == counts  # nothing lost on the way
    assert versions == [m.version for m in available_migrations()]
    # From now on the owner migrates alone: nothing to do, and the trail still verifies.
    again = run_gateway("migrate", "--database-url", owner_url)
    assert (again.returncode, again.stdout.strip()) == (0, "database is up to date")
    verified = run_gateway("audit", "verify", "--full", "--database-url", admin_url)
    assert verified.returncode == 0, verified.stderr


def test_a_fresh_database_is_migrated_by_the_owner_alone(env):
    admin_url, owner_url = _scratch(env)
    try:
        applied = run_gateway("migrate", "--database-url", owner_url)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == "applied: " + ", ".join(
            [*(m.version for m in available_migrations()), DEFINITIONS]
        )
        owners = _owners(connected(admin_url, lambda c: c.fetch(OWNERS)))
        assert {owner for owner in owners.values()} == {OWNER}
    finally:
        _drop(env, admin_url)


@pytest.mark.parametrize(
    ("role", "refusal"),
    [
        ("nobody_here", "--hand-over-to: no role named nobody_here"),
        (
            "postgres",
            "--hand-over-to: postgres has SUPERUSER or BYPASSRLS; the owner must have neither",
        ),
    ],
)
def test_handing_over_to_a_role_that_cannot_own_changes_nothing(env, released, role, refusal):
    admin_url, _, _ = released
    refused = run_gateway("migrate", "--database-url", admin_url, "--hand-over-to", role)
    assert (refused.returncode, refused.stderr.strip()) == (2, f"gateway: {refusal}")
    owners = _owners(connected(admin_url, lambda c: c.fetch(OWNERS)))
    assert {owner for owner in owners.values()} == {"postgres"}


# --- the audit verifier's role ------------------------------------------------------------------


@pytest.fixture(scope="module")
def auditor(env):
    """A login role in gateway_audit_reader, as the prod overlay's gateway_auditor is."""
    name = f"auditor_{secrets.token_hex(4)}"
    as_admin(env, lambda c: c.execute(f"create role {name} login in role gateway_audit_reader"))
    yield with_credentials(env.admin_url, name, "unused")
    as_admin(env, lambda c: c.execute(f"drop role {name}"))


def test_the_auditor_verifies_the_whole_trail(env, client, auditor):
    subject, _ = env.patients()[0]
    client.execute("{ consultations(first: 2) { edges { node { id } } } }", env.token(subject))
    everything = as_admin(env, lambda c: c.fetchval("select count(*) from data.access_events"))
    seen = connected(auditor, lambda c: c.fetchval("select count(*) from data.access_events"))
    assert seen == everything > 0
    verified = run_gateway("audit", "verify", "--full", "--database-url", auditor)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(
        f"audit chain intact: {everything} events (everything, archives included; "
    )
    # and, as the audit reader may, it recorded where each chain ended (the next run starts
    # there)
    recorded = as_admin(env, lambda c: c.fetchval("select count(*) from data.audit_checkpoints"))
    assert recorded > 0


@pytest.mark.parametrize(
    ("attack", "statement", "refusal"),
    [
        ("read patients", "select * from data.patients", "permission denied for table patients"),
        (
            "read consultations",
            "select * from data.consultations",
            "permission denied for table consultations",
        ),
        ("read accounts", "select * from data.accounts", "permission denied for table accounts"),
        (
            "call the pages",
            "select * from api.consultations_page('support', null, null::text[], 10, null, null)",
            "permission denied for schema api",
        ),
        (
            "forge an event",
            "insert into data.access_events (request_id, kind, issuer, subject, role) "
            "values ('x', 'disclosure', 'i', 's', 'support')",
            "permission denied for table access_events",
        ),
        (
            "rewrite an event",
            "update data.access_events set subject = 'x'",
            "permission denied for table access_events",
        ),
        (
            "add a field set",
            "insert into data.audit_field_sets (type_name, fields) values ('X', '{a}')",
            "permission denied for table audit_field_sets",
        ),
        (
            "move a chain head",
            "update data.audit_chains set last_seq = 0",
            "permission denied for table audit_chains",
        ),
    ],
)
def test_the_auditor_reads_the_trail_and_nothing_else(auditor, attack, statement, refusal):
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        connected(auditor, lambda c: c.execute(statement))
    assert str(refused.value) == refusal, attack
