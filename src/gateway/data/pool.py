"""The database pool (``Database``): connections as the application role, and their faults.

``Database.connect`` refuses a role that could see past row-level security; each statement
acquires a pooled connection, and asyncpg's faults become the gateway's (``ServiceUnavailable``).
Components never hold the pool: they hold the data edge (``data.edge.DatabaseEdge``), which
forwards to it once the lifespan has opened it.

No loader, cache or connection is shared across requests: each call acquires a pooled connection
for one statement, whose ``api`` function sets the caller's scope local to that statement's
transaction, so nothing of one request outlives it on the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gateway.config import Settings
from gateway.errors import ConfigurationError, ServiceUnavailable

__all__ = ["TRANSIENT_FAULTS", "Database", "check_application_role"]

log = logging.getLogger("gateway.db")

# Faults that pass: the server is down, restarting or starting (57P01-57P03, refused or reset
# sockets, a connection closed mid-statement), a statement timeout (57014), no free pooled
# connection in time, too many connections or another lack of resources (class 53), or a pooled
# connection left on a standby after a failover (25006), or, with a multi-host URL
# (`target_session_attrs=read-write`), no primary among its hosts yet during a failover. A broken
# connection is dropped by the pool when it is released, so it cannot poison a later request.
TRANSIENT_FAULTS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)
CLOSE_TIMEOUT_SECONDS = 5.0

ROLE_CHECK = """
select r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole,
       (select count(*) from pg_class c where c.relowner = r.oid) as owned_relations,
       (select count(*) from pg_namespace n where n.nspowner = r.oid) as owned_schemas,
       exists (select 1 from pg_namespace n where n.nspname in ('data', 'api')
               and pg_has_role(r.oid, n.nspowner, 'USAGE')) as acts_as_owner
from pg_roles r where r.rolname = current_user
"""


async def check_application_role(connection: asyncpg.Connection | PoolConnectionProxy) -> None:
    """Refuse to serve through a role that could see past row-level security."""
    row = await connection.fetchrow(ROLE_CHECK)
    assert row is not None  # current_user is always a role of pg_roles
    problems = []
    if row["rolsuper"]:
        problems.append("is a superuser")
    if row["rolbypassrls"]:
        problems.append("has BYPASSRLS")
    if row["rolcreaterole"]:
        problems.append("has CREATEROLE")
    if row["owned_relations"] or row["owned_schemas"] or row["acts_as_owner"]:
        problems.append("owns database objects (owners bypass row-level security)")
    if problems:
        raise ConfigurationError(
            f"DATABASE_URL: role {row['rolname']!r} {', '.join(problems)}; connect as a role that "
            "is a member of gateway_app, NOSUPERUSER NOBYPASSRLS, owning nothing"
        )


async def _no_session_state(connection: asyncpg.Connection) -> None:
    """What a released connection needs beyond asyncpg's own rollback of an open transaction:
    nothing. The gateway never changes session state (scopes are ``set_config(..., true)``,
    local to the statement's transaction; no LISTEN, advisory lock or cursor on pooled
    connections), so the default ``RESET ALL``, one more round trip per statement, is not sent.
    A test reads a released connection's settings to hold this."""


class Database:
    """A pool of connections as the application role."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._acquire_timeout = settings.db_acquire_timeout_seconds

    @classmethod
    async def connect(cls, settings: Settings) -> Database:
        server_settings = {"application_name": "consultation-gateway"}
        if settings.db_statement_timeout_ms:
            server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
        try:
            pool = await asyncpg.create_pool(
                settings.database_url,
                min_size=settings.db_pool_min_size,
                max_size=settings.db_pool_max_size,
                statement_cache_size=settings.db_statement_cache_size,
                server_settings=server_settings,
                reset=_no_session_state,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConfigurationError(f"DATABASE_URL: cannot connect ({exc})") from exc
        try:
            async with pool.acquire() as connection:
                await check_application_role(connection)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, settings)

    async def close(self) -> None:
        """Close gracefully, but not for long on a dead or wedged server: shutdown must end."""
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT_SECONDS)
        except TRANSIENT_FAULTS:
            self._pool.terminate()

    def pool_usage(self) -> tuple[int, int, int]:
        """(connections open, idle, maximum), for the metrics collector."""
        return self._pool.get_size(), self._pool.get_idle_size(), self._pool.get_max_size()

    async def fetch(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection() as connection:
            return await connection.fetch(statement, *args)

    async def execute(self, statement: str, *args: Any) -> None:
        async with self._connection() as connection:
            await connection.execute(statement, *args)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy]:
        """A pooled connection for one statement; its faults become ServiceUnavailable.

        A connection that breaks mid-statement can leave asyncpg's protocol state behind, so the
        fault may surface as an InternalClientError on a connection that is by then closed:
        still the fault. An InternalClientError on a live connection is a bug: the connection is
        out of step with its server, so it is terminated (never back in the pool) and the error
        raised. A statement refused as read-only means the pool still holds connections to a
        former primary after a failover: all of them are replaced.
        """
        try:
            # The wait bounded by a timeout scope, not by asyncpg's ``acquire(timeout=...)``,
            # which wraps every acquire in a task of its own (asyncio.wait_for): an event-loop
            # round and a task per statement, for the same bound.
            async with asyncio.timeout(self._acquire_timeout):
                connection = await self._pool.acquire()
        except TRANSIENT_FAULTS as exc:
            raise ServiceUnavailable() from exc
        try:
            yield connection
        except asyncpg.exceptions.InternalClientError as exc:
            if connection.is_closed():
                raise ServiceUnavailable() from exc
            connection.terminate()
            raise
        except asyncpg.exceptions.ReadOnlySQLTransactionError as exc:
            await self._pool.expire_connections()
            raise ServiceUnavailable() from exc
        except TRANSIENT_FAULTS as exc:
            raise ServiceUnavailable() from exc
        finally:
            await self._release(connection)

    async def _release(self, connection: PoolConnectionProxy) -> None:
        """Back to the pool. The pool resets the connection first and terminates it when that
        fails (a connection broken by a fault): the statement's outcome stands either way."""
        try:
            # The reset's budget, as asyncpg took it from the acquire's timeout before.
            await self._pool.release(connection, timeout=self._acquire_timeout)
        except Exception as exc:  # the connection is discarded; nothing of it is reused
            log.warning("connection discarded on release", extra={"error": type(exc).__name__})
