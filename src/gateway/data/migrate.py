"""Numbered migrations, applied once each and in order, then the definitions in force.

``migrations/NNNN_name.sql`` are applied in order, each in its own transaction, under an
advisory lock so that concurrent runners (several pods starting) apply each one once, then the
definitions in force (``gateway.data.definitions``: functions, triggers, policies, privileges).
An applied file whose text has changed is refused, not silently skipped; the one exception is a
text listed in ``migrations/released.sha256``: the migrations as released before their
definitions moved to ``sql/``, whose applied record is brought up to date.

Migrations run as the schema's owner, the database's owner, a role that is neither SUPERUSER nor
BYPASSRLS nor (on PostgreSQL 15, where it is nearly a superuser) CREATEROLE: ``gateway_owner`` in
the prod overlay and in every test; the roles the migrations grant to exist beforehand
(declared in the Cluster; ``gateway.dev.embedded.provision`` makes them for tests). A superuser
running them becomes that owner (``SET ROLE``). A database migrated by a superuser before that
(every object owned by the superuser) is handed over once by ``hand_over``: ``gateway migrate
--hand-over-to gateway_owner``, as the superuser.

The owner is under the patient tables' forced row-level security like everyone but a superuser:
a migration that reads or rewrites their rows sees none of them unless it says otherwise
(``alter table ... no force row level security`` and back, in its own transaction).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

from gateway.data.definitions import apply_definitions
from gateway.errors import ConfigurationError

__all__ = [
    "DEFINITIONS",
    "Migration",
    "apply_migrations",
    "available_migrations",
    "hand_over",
    "released_checksums",
]

# What ``apply_migrations`` lists after the versions when it applied the definitions.
DEFINITIONS = "definitions"

_LOCK_KEY = 0x6761746577617931  # "gateway1"

_BOOKKEEPING = """
create table if not exists public.schema_migrations (
    version text primary key,
    checksum text not null,
    applied_at timestamptz not null default now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def has_statements(self) -> bool:
        return any(
            line.strip() and not line.lstrip().startswith("--") for line in self.sql.splitlines()
        )


def available_migrations() -> list[Migration]:
    folder = resources.files("gateway.data") / "migrations"
    found = [
        Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda migration: migration.version)


def released_checksums() -> dict[str, tuple[str, str]]:
    """By version, the checksum of a migration's text as once released and of the text it was
    shortened to (``migrations/released.sha256``)."""
    listing = resources.files("gateway.data") / "migrations" / "released.sha256"
    found: dict[str, tuple[str, str]] = {}
    for line in listing.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            released, current, name = line.split()
            found[name.removesuffix(".sql")] = (released, current)
    return found


async def apply_migrations(connection: asyncpg.Connection) -> list[str]:
    """Apply every pending migration, then the definitions if the catalog does not hold them
    already; return the versions applied now, followed by ``DEFINITIONS`` if they were."""
    applied_now = []
    await connection.execute("select pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await _as_the_schemas_owner(connection)
        await connection.execute(_BOOKKEEPING)
        done = {
            row["version"]: row["checksum"]
            for row in await connection.fetch("select version, checksum from schema_migrations")
        }
        released = released_checksums()
        for migration in available_migrations():
            if migration.version in done:
                if done[migration.version] == released.get(migration.version, ("", ""))[0]:
                    if migration.checksum != released[migration.version][1]:
                        raise ConfigurationError(
                            f"migration {migration.version} was changed after it was released"
                        )
                    await connection.execute(
                        "update schema_migrations set checksum = $2 where version = $1",
                        migration.version,
                        migration.checksum,
                    )
                elif done[migration.version] != migration.checksum:
                    raise ConfigurationError(
                        f"migration {migration.version} was changed after it was applied"
                    )
                continue
            async with connection.transaction():
                if migration.has_statements:  # some hold only their history's prose now
                    await connection.execute(migration.sql)
                await connection.execute(
                    "insert into schema_migrations (version, checksum) values ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
            applied_now.append(migration.version)
        if await apply_definitions(connection):
            applied_now.append(DEFINITIONS)
        # The audit trail's months ahead (migration 0021); the nightly CronJob makes them too.
        await connection.execute("select data.create_access_event_partitions(3)")
    finally:
        await connection.execute("reset role")
        await connection.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


_WHO = """
select current_user as me,
       (select rolsuper from pg_roles where rolname = current_user) as super,
       o.rolname as owner, o.rolsuper as owner_super, o.rolbypassrls as owner_bypassrls,
       n.oid is not null as schema_exists
from pg_database d
left join pg_namespace n on n.nspname = 'data'
join pg_roles o on o.oid = coalesce(n.nspowner, d.datdba)
where d.datname = current_database()
"""


async def _as_the_schemas_owner(connection: asyncpg.Connection) -> None:
    """Migrate as the role that owns the schema (before the first migration: the database's
    owner), so that every object has that one owner. A superuser becomes it for the migration
    (``SET ROLE``); any other role is refused, naming the way out. An owner with BYPASSRLS is
    refused: the functions that run as their owner would skip row-level security."""
    row = await connection.fetchrow(_WHO)
    assert row is not None  # the current database, always one row
    if not row["owner_super"] and row["owner_bypassrls"]:
        raise ConfigurationError(
            f"the schema's owner {row['owner']} has BYPASSRLS; refusing to migrate"
        )
    if row["owner"] == row["me"]:
        return
    if row["super"]:
        if row["schema_exists"] or not row["owner_super"]:
            await connection.execute(
                await connection.fetchval("select format('set role %I', $1::text)", row["owner"])
            )
        return
    if row["owner_super"] and row["schema_exists"]:
        raise ConfigurationError(
            f"the schema belongs to {row['owner']}, a superuser: hand it over once, as that "
            f"superuser (gateway migrate --hand-over-to {row['me']})"
        )
    raise ConfigurationError(
        f"the schema belongs to {row['owner']}, not {row['me']}: migrate as {row['owner']}"
    )


# Everything the migrations create: the schemas data and api, what is in them, and the
# bookkeeping table. Tables take their indexes and owned sequences with them.
_OWNED = """
with target as (select oid from pg_roles where rolname = $1)
select format('alter schema %I owner to %I', nspname, $1::text)
from pg_namespace where nspname in ('data', 'api', 'audit_partitions')
  and nspowner <> (select oid from target)
union all
select format('alter %s %s owner to %I',
              case c.relkind when 'S' then 'sequence' when 'v' then 'view'
                             when 'm' then 'materialized view' else 'table' end,
              c.oid::regclass, $1::text)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where (n.nspname in ('data', 'api', 'audit_partitions')
       or c.oid = 'public.schema_migrations'::regclass
       or c.oid = to_regclass('public.schema_definitions'))
  and c.relkind in ('r', 'p', 'v', 'm', 'S')
  and c.relowner <> (select oid from target)
  and not (c.relkind = 'S' and exists (
      select from pg_depend d
      where d.objid = c.oid and d.classid = 'pg_class'::regclass and d.deptype in ('a', 'i')))
union all
select format('alter routine %s(%s) owner to %I', p.oid::regproc,
              pg_get_function_identity_arguments(p.oid), $1::text)
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('data', 'api') and p.proowner <> (select oid from target)
union all
select format('alter type %s owner to %I', t.oid::regtype, $1::text)
from pg_type t join pg_namespace n on n.oid = t.typnamespace
where n.nspname in ('data', 'api') and t.typtype in ('c', 'e', 'd')
  and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
  and t.typowner <> (select oid from target)
"""


async def hand_over(connection: asyncpg.Connection, role: str) -> int:
    """Make ``role`` own every object the migrations made (run as a superuser, once, when a
    database migrated by a superuser moves to an owner role); return how many changed hands.
    One transaction: all of them or none."""
    async with connection.transaction():
        target = await connection.fetchrow(
            "select rolsuper, rolbypassrls from pg_roles where rolname = $1", role
        )
        if target is None:
            raise ConfigurationError(f"--hand-over-to: no role named {role}")
        if target["rolsuper"] or target["rolbypassrls"]:
            raise ConfigurationError(
                f"--hand-over-to: {role} has SUPERUSER or BYPASSRLS; the owner must have neither"
            )
        await connection.execute(_BOOKKEEPING)
        statements = [row[0] for row in await connection.fetch(_OWNED, role)]
        for statement in statements:
            await connection.execute(statement)
    return len(statements)
