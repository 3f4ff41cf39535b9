"""The SQL in force: every function, trigger, policy and privilege, from one file per area.

The files are ``sql/*.sql``; they define everything of that kind in the schemas ``data`` and
``api``, and ``gateway migrate`` applies them after the numbered migrations.

The numbered migrations hold what has a history (tables, columns, constraints, indexes, data);
the files here hold what is simply *the current definition*, so that the predicate a patient's
page runs today is read in one place. Applying them makes the catalog exactly the files:

- every policy on a ``data`` table is dropped and the files create them again;
- functions and triggers are ``create or replace``d; one the files no longer define (its catalog
  row not rewritten by this transaction) is dropped;
- privileges are revoked and granted again (privileges.sql).

All of it is one transaction, so no session ever sees a table without its policies. It runs only
when there is something to do: the files' checksum and a digest of the catalog objects they make
are kept in ``public.schema_definitions``; when both are unchanged (the files are those applied,
and nobody changed a definition by hand since) nothing is applied and no lock is taken. When they
differ, the transaction takes ACCESS EXCLUSIVE on each table with policies (dropping and
creating a policy needs it) and SHARE ROW EXCLUSIVE on each table with triggers, for the few
milliseconds it runs; it asks for them with ``lock_timeout``, so that a long transaction holding
one of those tables makes it give up and try again rather than queue every reader behind it.

A numbered migration that must drop or change what a definition depends on (a column a policy
reads, a function's return type) drops that definition itself; the files then make it anew.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

__all__ = [
    "AREAS",
    "Definitions",
    "apply_definitions",
    "available_definitions",
    "catalog_digest",
    "definitions_current",
]

# The files, in the order they are applied: each creates only what the ones before it and the
# numbered migrations provide (SQL functions are checked against the catalog when created).
AREAS = (
    "visibility",  # the caller's scope, grants, who a caller may see
    "loaders",  # the by-id loaders
    "pages",  # the caller's lists: consultations, the access log
    "audit",  # the audit write, its chains and its append-only triggers
    "consent",  # consents, consent requests, break-glass
    "accounts",  # accounts and partners, and their change notifications
    "changes",  # the change feed's notifications
    "policies",  # row-level security
    "privileges",  # who may do what; last
)

_BOOKKEEPING = """
create table if not exists public.schema_definitions (
    id integer primary key check (id = 1),
    checksum text not null,
    catalog text not null,
    applied_at timestamptz not null default now()
)
"""

# Everything the files make, as the catalog shows it: function definitions (with their
# settings), triggers, policies and the privileges on schemas, tables, columns and functions.
_CATALOG = """
select md5(coalesce(string_agg(line, E'\n' order by line), '')) from (
    select 'function ' || pg_get_functiondef(p.oid)
           || array_to_string(array(select unnest(p.proacl)::text order by 1), ',') as line
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ('data', 'api')
    union all
    select format('policy %s on %s.%s: %s %s to %s using (%s) with check (%s)', policyname,
                  schemaname, tablename, permissive, cmd, roles, qual, with_check)
    from pg_policies where schemaname in ('data', 'api')
    union all
    select 'trigger ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
    from pg_trigger t join pg_class c on c.oid = t.tgrelid
    join pg_namespace n on n.oid = c.relnamespace
    where not t.tgisinternal and n.nspname in ('data', 'api')
    union all
    select format('relation %s %s row security %s forced %s', c.oid::regclass,
                  array_to_string(array(select unnest(c.relacl)::text order by 1), ','),
                  c.relrowsecurity, c.relforcerowsecurity)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api')
    union all
    select format('column %s.%s %s', a.attrelid::regclass, a.attname,
                  array_to_string(array(select unnest(a.attacl)::text order by 1), ','))
    from pg_attribute a join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api') and a.attacl is not null
    union all
    select format('schema %s %s', nspname,
                  array_to_string(array(select unnest(nspacl)::text order by 1), ','))
    from pg_namespace where nspname in ('data', 'api')
) catalog
"""

_DROP_POLICIES = """
select format('drop policy %I on %I.%I', policyname, schemaname, tablename)
from pg_policies where schemaname in ('data', 'api')
"""

# What this transaction did not write (its catalog row keeps an older xmin) is no longer defined.
_STALE = """
select format('drop trigger %I on %s', t.tgname, t.tgrelid::regclass)
from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
where not t.tgisinternal and n.nspname in ('data', 'api')
  and t.xmin <> pg_current_xact_id()::xid
union all
select format('drop routine %s', p.oid::regprocedure)
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('data', 'api') and p.xmin <> pg_current_xact_id()::xid
"""


@dataclass(frozen=True, slots=True)
class Definitions:
    """The definition files, in the order they are applied."""

    files: tuple[tuple[str, str], ...]  # (area, SQL text)

    @property
    def checksum(self) -> str:
        digest = hashlib.sha256()
        for area, sql in self.files:
            digest.update(f"{area}\n{len(sql)}\n{sql}".encode())
        return digest.hexdigest()


def available_definitions() -> Definitions:
    folder = resources.files("gateway.data") / "sql"
    present = {entry.name.removesuffix(".sql") for entry in folder.iterdir()}
    if present != set(AREAS):
        raise RuntimeError(f"gateway/data/sql holds {sorted(present)}, expected {list(AREAS)}")
    return Definitions(
        tuple((area, (folder / f"{area}.sql").read_text(encoding="utf-8")) for area in AREAS)
    )


async def catalog_digest(connection: asyncpg.Connection) -> str:
    digest: str = await connection.fetchval(_CATALOG)
    return digest


async def definitions_current(
    connection: asyncpg.Connection, definitions: Definitions | None = None
) -> bool:
    """Whether the definitions applied last are these files and the catalog still shows them."""
    definitions = definitions or available_definitions()
    exists = await connection.fetchval("select to_regclass('public.schema_definitions')")
    if exists is None:
        return False
    row = await connection.fetchrow("select checksum, catalog from public.schema_definitions")
    return (
        row is not None
        and row["checksum"] == definitions.checksum
        and row["catalog"] == await catalog_digest(connection)
    )


async def write_definitions(connection: asyncpg.Connection, definitions: Definitions) -> None:
    """The statements of one application, inside the caller's transaction."""
    for (statement,) in await connection.fetch(_DROP_POLICIES):
        await connection.execute(statement)
    for area, sql in definitions.files:
        if area == "privileges":  # after the sweep: its grants rewrite every function's row
            for (statement,) in await connection.fetch(_STALE):
                await connection.execute(statement)
        await connection.execute(sql)
    await connection.execute(_BOOKKEEPING)
    await connection.execute(
        "insert into public.schema_definitions (id, checksum, catalog) values (1, $1, $2) "
        "on conflict (id) do update set checksum = excluded.checksum, "
        "catalog = excluded.catalog, applied_at = now()",
        definitions.checksum,
        await catalog_digest(connection),
    )


async def apply_definitions(
    connection: asyncpg.Connection,
    *,
    lock_timeout: str = "1s",
    attempts: int = 10,
) -> bool:
    """Apply the definition files unless the catalog already holds exactly them; return whether
    they were applied. Each attempt waits at most ``lock_timeout`` for a lock (and so holds
    readers back at most that long); after ``attempts`` the last lock timeout is raised."""
    definitions = available_definitions()
    if await definitions_current(connection, definitions):
        return False
    attempt = 1
    while True:
        try:
            async with connection.transaction():
                await connection.execute(
                    "select set_config('lock_timeout', $1, true)", lock_timeout
                )
                await write_definitions(connection, definitions)
            return True
        except asyncpg.LockNotAvailableError:
            if attempt == attempts:
                raise
            await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
            attempt += 1
