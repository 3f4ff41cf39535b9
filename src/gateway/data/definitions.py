"""The SQL in force: every function, trigger, policy and privilege, from one file per area.

The files are ``sql/*.sql``; they define everything of that kind in the schemas ``data`` and
``api``, and ``gateway migrate`` applies them after the numbered migrations.

The numbered migrations hold what has a history (tables, columns, constraints, indexes, data);
the files here hold what is simply *the current definition*, so that the predicate a patient's
page runs today is read in one place. Applying them makes the catalog exactly the files:

- every policy and rule on a table of ``data`` is dropped (there are no rules; a rule could
  swallow the audit's inserts) and the files create the policies again, with row-level security;
  row-level security on a table no file enables it on is refused (``ConfigurationError``), never
  switched off, so that a migration enabling it before policies.sql names the table fails closed;
- functions and triggers are ``create or replace``d; one the files no longer define (its catalog
  row not rewritten by this transaction) is dropped;
- every privilege anyone but the owner holds there, PUBLIC's and default privileges included, is
  revoked, what the owner took from itself is given back, and privileges.sql grants what it
  grants.

All of it is one transaction, so no session ever sees a table without its policies. It runs only
when there is something to do: the files' checksum and a digest of the catalog objects they make
are kept in ``public.schema_definitions``; when both are unchanged (the files are those applied,
and nobody changed a definition by hand since) nothing is applied and no lock is taken. When they
differ, the transaction first takes its locks, all its waits together half a second at most:
ACCESS SHARE on every table (so that no policy changes while it decides), SHARE ROW EXCLUSIVE on
each table with triggers (writes wait, reads do not) and, only when the policies file or the
policies in the catalog differ from those applied, ACCESS EXCLUSIVE on each table with policies
(dropping and creating a policy needs it; reads wait too); then it runs for some tens of
milliseconds. A long transaction holding one of those tables makes it give up, changing
nothing, and try again, rather than queue every reader behind it (``apply_definitions``).

A numbered migration that must drop or change what a definition depends on (a column a policy
reads, a function's return type) drops that definition itself; the files then make it anew.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from gateway.errors import ConfigurationError

__all__ = [
    "AREAS",
    "Definitions",
    "Digest",
    "apply_definitions",
    "available_definitions",
    "catalog_digest",
    "catalog_digests",
    "definitions_current",
    "lock_tables",
    "write_definitions",
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
# The column a later release added, only where it is missing: ADD COLUMN takes ACCESS EXCLUSIVE
# on the table before IF NOT EXISTS looks, and every migrate would queue readers of it behind that.
_POLICIES_COLUMN = (
    "alter table public.schema_definitions add column policies text not null default ''"
)
_HAS_POLICIES_COLUMN = """
select exists (select from pg_attribute where attrelid = 'public.schema_definitions'::regclass
               and attname = 'policies' and not attisdropped)
"""

# The default privileges a migrate takes away, one row per grant: every one in data and api,
# whoever's, and of the owner's in every schema (they reach what the migrations make in data and
# api) every one but the owner's to itself and PUBLIC's EXECUTE on functions and USAGE on types.
# Those two are PostgreSQL's own, which a DBA may narrow (``alter default privileges revoke
# execute on functions from public``): nobody gains by that, and a migrate leaves it as it is.
_DEFAULTS_SWEPT = """
select d.defaclrole, n.nspname, d.defaclobjtype, x.grantee, x.privilege_type, x.is_grantable
from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace
cross join lateral aclexplode(d.defaclacl) x
where n.nspname in ('data', 'api')
   or (d.defaclnamespace = 0
       and d.defaclrole = (select nspowner from pg_namespace where nspname = 'data')
       and x.grantee <> d.defaclrole and (x.grantee <> 0 or d.defaclobjtype not in ('f', 'T')))
"""

# Everything the files make, as the catalog shows it: function definitions (with their
# settings), triggers, policies, row-level security, rules (there are none: a rule on a table
# could swallow the audit's inserts) and privileges, the default privileges a migrate takes away
# included. Read with search_path = pg_catalog, so that every name comes out qualified whoever
# asks.
_CATALOG = f"""
with line(part, text) as (
    select 'routines', 'function ' || pg_get_functiondef(p.oid)
           || array_to_string(array(select unnest(p.proacl)::text order by 1), ',')
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ('data', 'api')
    union all
    select 'policies', format('policy %s on %s.%s: %s %s to %s using (%s) with check (%s)',
                              policyname, schemaname, tablename, permissive, cmd, roles, qual,
                              with_check)
    from pg_policies where schemaname in ('data', 'api')
    union all
    select 'routines', 'trigger ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
    from pg_trigger t join pg_class c on c.oid = t.tgrelid
    join pg_namespace n on n.oid = c.relnamespace
    where not t.tgisinternal and n.nspname in ('data', 'api')
    union all
    select 'policies', 'rule ' || pg_get_ruledef(r.oid) || ' ' || r.ev_enabled::text
    from pg_rewrite r join pg_class c on c.oid = r.ev_class
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api') and c.relkind in ('r', 'p')
    union all
    select 'policies', format('row security on %s %s forced %s', c.oid::regclass,
                              c.relrowsecurity, c.relforcerowsecurity)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api') and c.relkind in ('r', 'p')
    union all
    select 'routines', format('relation %s %s', c.oid::regclass,
                              array_to_string(array(select unnest(c.relacl)::text order by 1), ','))
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api')
    union all
    select 'routines', format('column %s.%s %s', a.attrelid::regclass, a.attname,
                              array_to_string(array(select unnest(a.attacl)::text order by 1), ','))
    from pg_attribute a join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api') and a.attacl is not null
    union all
    select 'routines', format('schema %s %s', nspname,
                              array_to_string(array(select unnest(nspacl)::text order by 1), ','))
    from pg_namespace where nspname in ('data', 'api')
    union all
    select 'routines', format('default privilege of %s in %s on %s: %s to %s%s',
                              s.defaclrole::regrole, coalesce(s.nspname, 'every schema'),
                              s.defaclobjtype, s.privilege_type,
                              case s.grantee when 0 then 'public' else s.grantee::regrole::text end,
                              case when s.is_grantable then ' with grant option' else '' end)
    from ({_DEFAULTS_SWEPT}) s
)
select md5(coalesce(string_agg(text, E'\\n' order by text collate "C"), '')) as everything,
       md5(coalesce(string_agg(text, E'\\n' order by text collate "C")
                    filter (where part = 'policies'), '')) as policies
from line
"""

_DROP_POLICIES_AND_RULES = """
select format('drop policy %I on %I.%I', policyname, schemaname, tablename)
from pg_policies where schemaname in ('data', 'api')
union all
select format('drop rule %I on %s', r.rulename, c.oid::regclass)
from pg_rewrite r join pg_class c on c.oid = r.ev_class
join pg_namespace n on n.oid = c.relnamespace
where n.nspname in ('data', 'api') and c.relkind in ('r', 'p')
"""

# What this transaction did not write (its catalog row keeps an older xmin) is no longer defined;
# nor is a function whose row is still the one the owner's grant above wrote ($1: oid:ctid).
# (Sound because the files run in the top-level transaction: apply_definitions refuses to run
# inside another one, and the files hold no DO block, whose exception clause would make a
# subtransaction.)
_STALE = """
select format('drop trigger %I on %s', t.tgname, t.tgrelid::regclass)
from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
where not t.tgisinternal and n.nspname in ('data', 'api')
  and t.xmin <> pg_current_xact_id()::xid
union all
select format('drop routine %s', p.oid::regprocedure)
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('data', 'api')
  and (p.xmin <> pg_current_xact_id()::xid or p.oid::text || ':' || p.ctid::text = any($1::text[]))
"""

# What the owner took from itself on what it owns in data and api (``revoke insert on data.x from
# gateway_owner``), to be given back before the files run, which need some of it (a trigger's
# creation TRIGGER on its table, a function's replacement EXECUTE on it and CREATE on its
# schema). Only where something is missing, so that no other catalog row is rewritten: the stale
# sweep tells the functions the files made by the rows this transaction wrote.
_OWNER_NARROWED = """
with owner as (select nspowner as oid from pg_namespace where nspname = 'data'),
owned as (
    select case when c.relkind = 'S' then 'sequence ' else 'table ' end || c.oid::regclass as what,
           c.relacl as acl, (case when c.relkind = 'S' then 's' else 'r' end)::"char" as kind,
           null::oid as routine
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api') and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
      and c.relowner = (select oid from owner)
    union all
    select 'routine ' || p.oid::regprocedure, p.proacl, 'f', p.oid
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ('data', 'api') and p.proowner = (select oid from owner)
    union all
    select 'schema ' || quote_ident(nspname), nspacl, 'n', null
    from pg_namespace where nspname in ('data', 'api') and nspowner = (select oid from owner)
)
select format('grant all on %s to %s', o.what, w.oid::regrole) as statement, o.routine
from owned o cross join owner w
where exists (select privilege_type from aclexplode(acldefault(o.kind, w.oid)) x
              where x.grantee = w.oid
              except
              select privilege_type from aclexplode(coalesce(o.acl, acldefault(o.kind, w.oid))) x
              where x.grantee = w.oid)
"""

# Every privilege anyone but the owner holds on what is in data and api, PUBLIC's included:
# revoked before privileges.sql grants what it grants, so that nothing granted by hand survives.
_REVOKE_EVERYTHING = """
with grantee as (select oid, quote_ident(rolname) as name from pg_roles
                 union all select 0, 'public'),
objects as (
    select case when c.relkind = 'S' then 'sequence ' else 'table ' end || c.oid::regclass as what,
           c.relacl as acl, c.relowner as owner, null::text as col
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api') and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
    union all
    select 'table ' || c.oid::regclass, a.attacl, c.relowner, quote_ident(a.attname)
    from pg_attribute a join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('data', 'api') and a.attacl is not null
    union all
    select 'routine ' || p.oid::regprocedure, p.proacl, p.proowner, null
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ('data', 'api')
    union all
    select 'schema ' || quote_ident(nspname), nspacl, nspowner, null
    from pg_namespace where nspname in ('data', 'api')
)
select distinct format('revoke all %s on %s from %s', coalesce('(' || o.col || ')', ''), o.what,
                       g.name)
from objects o cross join lateral aclexplode(o.acl) x join grantee g on g.oid = x.grantee
where x.grantee <> o.owner
"""
# And the default privileges a migrate takes away, each with whether this session may: only a
# member of the role whose default privileges they are may change them, or a superuser
# (PostgreSQL 15 asks for membership, later releases for its privileges: USAGE covers both).
_REVOKE_DEFAULTS = f"""
with grantee as (select oid, quote_ident(rolname) as name from pg_roles
                 union all select 0, 'public')
select distinct
       format('alter default privileges for role %s %s revoke all on %s from %s',
              s.defaclrole::regrole, coalesce('in schema ' || quote_ident(s.nspname), ''),
              case s.defaclobjtype when 'r' then 'tables' when 'S' then 'sequences'
                   when 'f' then 'functions' when 'T' then 'types' else 'schemas' end, g.name)
           as statement,
       pg_has_role(s.defaclrole, 'USAGE') as allowed
from ({_DEFAULTS_SWEPT}) s join grantee g on g.oid = s.grantee
order by 1
"""

# The tables whose policies, row-level security or triggers the files make (and those that have
# some now): what a transaction applying them locks, all at once, before anything else.
# Every table of data and api, and for each: whether it has policies, row-level security (forced
# or not) or a rule (none a table's own: _RETURN is a view's), whose drop needs ACCESS EXCLUSIVE
# like a policy's, and the triggers it has, as the catalog holds them now. Named ``schema.table``
# unquoted, as the files name them (format's %I would quote every name under
# quote_all_identifiers, and no name would match); quoted only in the LOCK statements.
_TABLES_NOW = """
select n.nspname || '.' || c.relname as name,
       c.relrowsecurity or c.relforcerowsecurity
           or exists (select from pg_policy where polrelid = c.oid)
           or exists (select from pg_rewrite where ev_class = c.oid and rulename <> '_RETURN')
           as secured,
       array(select tgname::text from pg_trigger where tgrelid = c.oid and not tgisinternal)
           as triggers
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname in ('data', 'api') and c.relkind in ('r', 'p')
"""
_POLICY_TABLE = re.compile(r"^(?:create policy \w+ on|alter table) ([\w.]+)", re.MULTILINE)
_TRIGGER = re.compile(
    r"^create or replace trigger (\w+)\b.*?\bon ([\w.]+)", re.MULTILINE | re.DOTALL
)

# Row-level security enabled or forced on a table no definition file enables it on: refused,
# never switched off. Switching it off would open the table to whoever holds a grant on it, and
# the likeliest cause is a migration that switched it on for a new table whose policies.sql lines
# are missing (fail closed).
_SECURED_UNNAMED = """
select n.nspname || '.' || c.relname
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname in ('data', 'api') and c.relkind in ('r', 'p')
  and (c.relrowsecurity or c.relforcerowsecurity)
  and n.nspname || '.' || c.relname <> all($1::text[])
order by 1
"""
_ENABLED = re.compile(r"^alter table ([\w.]+) enable row level security\b", re.MULTILINE)

# What the revokes above left of the default privileges a migrate takes away (nothing, unless a
# revoke did not take).
_DEFAULTS_LEFT = f"""
select distinct format('%s in %s on %s', s.defaclrole::regrole,
                       coalesce(s.nspname, 'every schema'), s.defaclobjtype)
from ({_DEFAULTS_SWEPT}) s
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


@dataclass(frozen=True, slots=True)
class Digest:
    """The catalog as a digest: of everything the files make, and of the policies part alone
    (policies, rules, row-level security), which only ACCESS EXCLUSIVE locks can change."""

    everything: str
    policies: str


async def catalog_digests(connection: asyncpg.Connection) -> Digest:
    """The digests, read with the session settings that shape the catalog's text pinned (names
    qualified and quoted only where needed), whoever asks."""
    search_path, quoting = await connection.fetchrow(
        "select current_setting('search_path'), current_setting('quote_all_identifiers')"
    ) or ("", "off")
    await connection.execute(
        "select set_config('search_path', 'pg_catalog', false), "
        "set_config('quote_all_identifiers', 'off', false)"
    )

    async def put_back() -> None:
        await connection.execute(
            "select set_config('search_path', $1, false), "
            "set_config('quote_all_identifiers', $2, false)",
            search_path,
            quoting,
        )

    try:
        everything, policies = await connection.fetchrow(_CATALOG) or ("", "")
    except BaseException:
        # Inside a transaction the error aborted it: a statement now would fail and hide this
        # error, and the transaction's rollback puts the settings back.
        if not connection.is_in_transaction():
            await put_back()
        raise
    await put_back()
    return Digest(everything, policies)


async def catalog_digest(connection: asyncpg.Connection) -> str:
    """The digest of everything the files make, as the catalog shows it now."""
    return (await catalog_digests(connection)).everything


def _policies_key(definitions: Definitions, digest: Digest) -> str:
    """What the policies were made from and what the catalog shows of them."""
    sql = dict(definitions.files)["policies"]
    return hashlib.sha256(sql.encode()).hexdigest() + ":" + digest.policies


async def _applied(connection: asyncpg.Connection) -> asyncpg.Record | None:
    if await connection.fetchval("select to_regclass('public.schema_definitions')") is None:
        return None
    row: asyncpg.Record | None = await connection.fetchrow(
        "select * from public.schema_definitions"
    )
    return row


async def definitions_current(
    connection: asyncpg.Connection, definitions: Definitions | None = None
) -> bool:
    """Whether the definitions applied last are these files and the catalog still shows them."""
    definitions = definitions or available_definitions()
    row = await _applied(connection)
    return (
        row is not None
        and row["checksum"] == definitions.checksum
        and row["catalog"] == await catalog_digest(connection)
    )


class _GaveWay(Exception):
    """An attempt that gave way to other sessions, having changed nothing."""


async def _lock(connection: asyncpg.Connection, statement: str, deadline: float) -> None:
    """Run a LOCK statement within what is left of the attempt's wait, then put the
    transaction's statement_timeout back."""
    loop = asyncio.get_running_loop()
    left = deadline - loop.time()
    if left < 0.001:
        raise _GaveWay("no time was left to wait for the table locks")
    before: str = await connection.fetchval("select current_setting('statement_timeout')")
    await connection.execute(
        "select set_config('statement_timeout', $1, true)", f"{left * 1000:.0f}"
    )
    started = loop.time()
    try:
        await connection.execute(statement)
    except asyncpg.QueryCanceledError as exc:
        if not _timed_out(exc, loop.time() - started, left):
            raise  # somebody's cancel (an operator's pg_cancel_backend) stops the migrate
        raise _GaveWay(f"a table lock was not free within the wait ({exc})") from exc
    except asyncpg.LockNotAvailableError as exc:
        raise _GaveWay(f"a table lock was not free within the wait ({exc})") from exc
    except asyncpg.DeadlockDetectedError as exc:
        raise _GaveWay(f"a table lock would have deadlocked ({exc})") from exc
    await connection.execute("select set_config('statement_timeout', $1, true)", before)


def _timed_out(exc: asyncpg.QueryCanceledError, waited: float, timeout: float) -> bool:
    """Whether a canceled statement was canceled by its statement_timeout rather than by somebody
    (both are SQLSTATE 57014): by the message, or where the server's messages are translated, by
    the wait having lasted the whole timeout."""
    message = str(exc)
    if "statement timeout" in message:
        return True
    return "user request" not in message and waited >= timeout


def _quoted(name: str) -> str:
    """``schema.table`` (a schema of ours: no dot in it) as a statement names it."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split(".", 1))


async def lock_tables(
    connection: asyncpg.Connection, definitions: Definitions, deadline: float
) -> tuple[bool, str]:
    """Take the locks an application needs, all before it changes anything, every wait within
    ``deadline``; return whether the policies must be made again and the policies' digest.

    First ACCESS SHARE on every table of data and api: nobody waits for it, and while it is held
    no policy, rule or row-level security can change (each needs ACCESS EXCLUSIVE), so that the
    decision taken next stands. The policies are made again when the policies file or the
    catalog's policies differ from those applied: then ACCESS EXCLUSIVE on every table whose
    policies or row-level security the files make or the catalog holds, and on every table with a
    rule (which is dropped). SHARE ROW EXCLUSIVE on every other table the files make triggers on,
    ACCESS EXCLUSIVE on a table with a trigger the files do not make (dropping it needs that).
    Tables are named unquoted, as the files name them, and quoted in the LOCK statements."""
    tables = await connection.fetch(_TABLES_NOW)
    if tables:
        names = ", ".join(_quoted(name) for name in sorted(row["name"] for row in tables))
        await _lock(connection, f"lock table {names} in access share mode", deadline)
    applied = await _applied(connection)
    digest = await catalog_digests(connection)
    policies = applied is None or applied.get("policies") != _policies_key(definitions, digest)
    text = "\n".join(sql for _, sql in definitions.files)
    made = set(_TRIGGER.findall(text))
    shared = {table for _, table in made}
    exclusive = set(_POLICY_TABLE.findall(text)) if policies else set()
    for row in tables:
        if any((trigger, row["name"]) not in made for trigger in row["triggers"]):
            exclusive.add(row["name"])
        elif row["triggers"]:
            shared.add(row["name"])
        if policies and row["secured"]:
            exclusive.add(row["name"])
    shared -= exclusive
    for chosen, mode in ((exclusive, "access exclusive"), (shared, "share row exclusive")):
        if chosen:
            names = ", ".join(_quoted(name) for name in sorted(chosen))
            await _lock(connection, f"lock table {names} in {mode} mode", deadline)
    return policies, digest.policies


async def _owner_back(connection: asyncpg.Connection) -> list[str]:
    """Give the owner back what it took from itself; return the rows (oid:ctid) of the functions
    whose catalog rows that rewrote, for the stale sweep."""
    narrowed = await connection.fetch(_OWNER_NARROWED)
    for row in narrowed:
        await connection.execute(row["statement"])
    routines = [row["routine"] for row in narrowed if row["routine"] is not None]
    rows: list[str] = await connection.fetchval(
        "select coalesce(array_agg(oid::text || ':' || ctid::text), '{}') from pg_proc "
        "where oid = any($1::oid[])",
        routines,
    )
    return rows


async def _revoke_defaults(connection: asyncpg.Connection) -> None:
    """Take away the default privileges a migrate takes away; refuse, before any, when some are
    another role's, which the owner may not change (PostgreSQL's own error would not say what
    to do)."""
    revokes = await connection.fetch(_REVOKE_DEFAULTS)
    refused = [row["statement"] for row in revokes if not row["allowed"]]
    if refused:
        raise ConfigurationError(
            "default privileges of another role remain in data or api, which only a superuser "
            "(or a member of that role) may take away: as a superuser, run "
            + " ".join(f"`{statement};`" for statement in refused)
            + ", then run `gateway migrate` again; nothing was changed"
        )
    for row in revokes:
        await connection.execute(row["statement"])


async def write_definitions(
    connection: asyncpg.Connection,
    definitions: Definitions,
    *,
    policies: bool = True,
    policies_digest: str | None = None,
) -> None:
    """The statements of one application, inside the caller's transaction (a top-level one).
    Without ``policies`` the policies, rules and row-level security are left as they are: the
    caller holds the locks that keep them as ``policies_digest`` shows them."""
    enabled = sorted({name for _, sql in definitions.files for name in _ENABLED.findall(sql)})
    unnamed = [row[0] for row in await connection.fetch(_SECURED_UNNAMED, enabled)]
    if unnamed:
        raise ConfigurationError(
            f"row-level security is enabled or forced on {', '.join(unnamed)}, but no definition "
            "file enables it there: add the table's lines to src/gateway/data/sql/policies.sql "
            "(or, if it is not wanted, switch it off: ALTER TABLE ... NO FORCE ROW LEVEL "
            "SECURITY, DISABLE ROW LEVEL SECURITY), then run `gateway migrate` again; nothing "
            "was changed"
        )
    regranted = await _owner_back(connection)
    if policies:
        for (statement,) in await connection.fetch(_DROP_POLICIES_AND_RULES):
            await connection.execute(statement)
    for area, sql in definitions.files:
        if area == "privileges":  # after the sweep: its grants rewrite every function's row
            for (statement,) in await connection.fetch(_STALE, regranted):
                await connection.execute(statement)
            for (statement,) in await connection.fetch(_REVOKE_EVERYTHING):
                await connection.execute(statement)
            await _revoke_defaults(connection)
            left = [row[0] for row in await connection.fetch(_DEFAULTS_LEFT)]
            if left:
                raise ConfigurationError(
                    f"default privileges a migrate takes away remain ({', '.join(left)}): "
                    "reset them (ALTER DEFAULT PRIVILEGES), then run `gateway migrate` again"
                )
        if area != "policies" or policies:
            await connection.execute(sql)
    await connection.execute(_BOOKKEEPING)
    if not await connection.fetchval(_HAS_POLICIES_COLUMN):
        await connection.execute(_POLICIES_COLUMN)
    digest = await catalog_digests(connection)
    if not policies and digest.policies != policies_digest:
        raise _GaveWay("the policies changed while the definitions were applied")
    await connection.execute(
        "insert into public.schema_definitions (id, checksum, catalog, policies) "
        "values (1, $1, $2, $3) on conflict (id) do update set checksum = excluded.checksum, "
        "catalog = excluded.catalog, policies = excluded.policies, applied_at = now()",
        definitions.checksum,
        digest.everything,
        _policies_key(definitions, digest),
    )


async def apply_definitions(
    connection: asyncpg.Connection, *, lock_wait: float = 0.5, attempts: int = 10
) -> bool:
    """Apply the definition files unless the catalog already holds exactly them; return whether
    they were applied.

    Each attempt first takes every table lock it needs (``lock_tables``), all its waits together
    at most ``lock_wait`` seconds; readers queued behind it wait no longer than that and the few
    milliseconds the transaction then runs. Half a second, under PostgreSQL's deadlock_timeout
    (1 s), so that where a request holds one table and waits for another this gives up first
    and the request goes on. After ``attempts`` it stops, having changed nothing. A cancel
    (an operator's ``pg_cancel_backend``) is no wait given up: it stops the migrate at once."""
    if connection.is_in_transaction():
        raise RuntimeError("apply_definitions runs in a transaction of its own, not inside one")
    if lock_wait < 0.001:
        raise ValueError("lock_wait is at least a millisecond")
    definitions = available_definitions()
    if await definitions_current(connection, definitions):
        return False
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            async with connection.transaction():
                deadline = asyncio.get_running_loop().time() + lock_wait
                policies, digest = await lock_tables(connection, definitions, deadline)
                await connection.execute(
                    "select set_config('lock_timeout', $1, true)", f"{lock_wait * 1000:.0f}"
                )
                await write_definitions(
                    connection, definitions, policies=policies, policies_digest=digest
                )
            return True
        except (_GaveWay, asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            last = str(exc)
            if attempt < attempts:
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
    raise ConfigurationError(
        f"the definitions could not take their table locks in {attempts} attempts of "
        f"{lock_wait:g} s each ({last}); nothing was changed: run `gateway migrate` again"
    )
