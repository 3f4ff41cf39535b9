"""A gateway whose database edge can be sabotaged one statement at a time, to prove layer 4.

``SabotagedDatabase`` is the real application-role database (row-level security, the api.*
functions), except for the statements in ``broken``: each is replaced by SQL the test chose, run as
a superuser (no row-level security, no caller predicate), the way a careless new query, a wrong
join or a shared cache would return rows. Only the exit check then stands between those rows and
the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg

from gateway import create_app
from gateway.data.pool import Database
from tests.support import GraphQLClient, serving

# The statement's arguments -> (superuser SQL, its arguments).
Replacement = Callable[..., tuple[str, list[Any]]]

# What a loader statement returns beside each row: the grant it was seen under (none here).
NO_GRANT = "null::text[] as consent_scopes, null::text as break_glass_reason"


class SabotagedDatabase:
    def __init__(self, env: Any) -> None:
        self._env = env
        self.broken: dict[str, Replacement] = {}
        self.calls: dict[str, int] = {}  # how often each broken statement was used
        self._real: Database | None = None
        self._admin: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _open(self) -> None:
        if self._real is None:
            self._loop = asyncio.get_running_loop()
            self._real = await Database.connect(self._env.settings())
            self._admin = await asyncpg.create_pool(self._env.admin_url, min_size=1, max_size=2)

    async def fetch(self, statement: str, *args: Any) -> list[Any]:
        await self._open()
        replacement = self.broken.get(statement)
        if replacement is not None:
            self.calls[statement] = self.calls.get(statement, 0) + 1
            sql, values = replacement(*args)
            return await self._admin.fetch(sql, *values)
        return await self._real.fetch(statement, *args)

    async def execute(self, statement: str, *args: Any) -> None:
        await self._open()
        await self._real.execute(statement, *args)

    async def _close(self) -> None:
        await self._real.close()
        await self._admin.close()

    def close(self) -> None:
        """Close both pools on the server's own event loop (they belong to it)."""
        if self._loop is not None and self._real is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(15)


@contextlib.contextmanager
def sabotaged_gateway(env: Any) -> Iterator[tuple[GraphQLClient, SabotagedDatabase]]:
    database = SabotagedDatabase(env)
    with serving(create_app(env.settings(), database=database)) as server:
        client = GraphQLClient(server.url)
        try:
            yield client, database
        finally:
            client.http.close()
            database.close()


def keeping(sql: str, *indexes: int) -> Replacement:
    """A replacement running ``sql`` with the statement's arguments at ``indexes``."""
    return lambda *args: (sql, [args[i] for i in indexes])


def unfiltered() -> dict[str, Replacement]:
    """Every consultation, recording and patient statement without its WHERE: the loaders of a
    gateway that forgot every predicate, as a superuser."""
    from gateway.data import queries

    return {
        queries.CONSULTATIONS_PAGE: keeping(
            f"select *, {NO_GRANT} from data.consultations "
            "order by scheduled_at desc, id desc limit $1",
            3,
        ),
        queries.CONSULTATIONS_BY_ID: keeping(
            f"select *, {NO_GRANT} from data.consultations where id = any($1::uuid[])", 3
        ),
        queries.RECORDINGS_BY_CONSULTATION: keeping(
            f"select *, {NO_GRANT} from data.recordings where consultation_id = any($1::uuid[])",
            3,
        ),
        queries.RECORDINGS_BY_ID: keeping(
            f"select *, {NO_GRANT} from data.recordings where id = any($1::uuid[])", 3
        ),
        queries.PATIENTS_BY_ID: keeping(
            f"select *, {NO_GRANT} from data.patients where id = any($1::uuid[])", 3
        ),
    }


@contextlib.contextmanager
def broken(database: SabotagedDatabase, statement: str, replacement: Replacement) -> Iterator[None]:
    database.broken[statement] = replacement
    try:
        yield
    finally:
        database.broken.pop(statement, None)
