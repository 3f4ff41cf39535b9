"""The data edge (``DatabaseEdge``): the one object every component sends its statements through.

It is made when the app is assembled, before there is a pool, and handed to every component (its
``fetch`` is the ``Fetch`` they take); the lifespan opens the database pool (``data.pool``)
behind it. It counts each statement and, when tracing, makes a span of it named after its
constant in ``queries``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from asyncpg import Record

from gateway.data.pool import Database
from gateway.data.queries import STATEMENT_NAMES
from gateway.errors import ServiceUnavailable
from gateway.ops.metrics import Metrics

if TYPE_CHECKING:
    from gateway.ops.tracing import Tracing

__all__ = ["DatabaseEdge", "Fetch"]

# What a component is handed to send a statement: ``DatabaseEdge.fetch`` (a test may hand in its
# own), called as ``fetch(statement, *arguments)`` and answering the statement's rows.
Fetch = Callable[..., Awaitable[list[Record]]]


class DatabaseEdge:
    """Forwards to the ``Database`` once the lifespan has opened it (503 before and after)."""

    def __init__(self, metrics: Metrics, tracing: Tracing | None) -> None:
        self.database: Database | None = None
        self._statements = metrics.db_statements
        self._tracing = tracing

    def _open(self) -> Database:
        if self.database is None:
            raise ServiceUnavailable()
        self._statements.inc()
        return self.database

    @contextlib.contextmanager
    def _span(self, statement: str) -> Iterator[None]:
        if self._tracing is None:
            yield
            return
        with self._tracing.statement(STATEMENT_NAMES.get(statement, "UNNAMED_STATEMENT")):
            yield

    async def fetch(self, statement: str, *args: Any) -> list[Any]:
        database = self._open()
        with self._span(statement):
            return await database.fetch(statement, *args)

    async def execute(self, statement: str, *args: Any) -> None:
        database = self._open()
        with self._span(statement):
            await database.execute(statement, *args)

    def pool_usage(self) -> tuple[int, int, int] | None:
        usage = getattr(self.database, "pool_usage", None)
        return usage() if usage is not None else None
