"""Live consultation events: PostgreSQL notifications fanned out to subscribers.

One LISTEN connection per replica receives IDs from PostgreSQL (sql/changes.sql) and fans them
out to subscribers. ``follow_consultation`` re-reads the consultation for each event through the
event's own fresh loaders under the subscriber's principal, so loaders and row-level security apply
to every event exactly as to a query, and the transport's disclosure step checks and audits each
event once its whole selection has resolved. A subscriber whose access ends (revoked, expired)
gets no more events; neither does one whose token expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from gateway.data.loaders import Loaders
from gateway.data.pool import TRANSIENT_FAULTS
from gateway.errors import BadUserInput, ServiceUnavailable
from gateway.identity import Principal

__all__ = ["EventHub", "EventScope", "follow_consultation"]

log = logging.getLogger("gateway.events")
CHANNEL = "consultation_events"
LISTENER = "gateway-listen"  # the LISTEN connection's application_name (pg_stat_activity)
# Put in subscribers' queues when the LISTEN connection is lost: an object, so no NOTIFY payload
# (whose kinds are text) can ever equal it.
INTERRUPTED = object()


class EventScope(Protocol):
    """What a subscription needs of its transport: the subscriber, the hub, fresh loaders for
    each event, and whether the transport has ended the stream (an event it could not clear)."""

    @property
    def principal(self) -> Principal: ...

    @property
    def hub(self) -> EventHub: ...

    @property
    def closed(self) -> bool: ...

    def next_event(self) -> Loaders: ...


class EventHub:
    """Fans PostgreSQL notifications out to in-process subscribers by consultation."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: asyncpg.Connection | None = None
        self._queues: dict[UUID, set[asyncio.Queue[str | object]]] = {}
        self._lock = asyncio.Lock()

    async def _listen(self) -> None:
        async with self._lock:
            if self._connection is None or self._connection.is_closed():
                connection = None
                try:
                    connection = await asyncpg.connect(
                        self._dsn, timeout=5, server_settings={"application_name": LISTENER}
                    )
                    await connection.add_listener(CHANNEL, self._notified)
                except (asyncpg.PostgresError, *TRANSIENT_FAULTS) as exc:
                    if connection is not None:
                        connection.terminate()  # connected, but could not listen
                    raise ServiceUnavailable() from exc
                connection.add_termination_listener(self._lost)
                self._connection = connection

    async def ready(self) -> None:
        """Return when the LISTEN connection is open and answers, opening it if needed (after a
        restart or a failover, on the primary the URL finds now); else ServiceUnavailable. For
        ``/readyz``: a replica that cannot listen cannot serve subscriptions."""
        await self._listen()
        async with self._lock:
            connection = self._connection
            if connection is None:
                raise ServiceUnavailable()
            try:
                await connection.fetchval("select 1", timeout=2)
            except (asyncpg.PostgresError, *TRANSIENT_FAULTS) as exc:
                connection.terminate()
                raise ServiceUnavailable() from exc

    def _lost(self, _connection: Any) -> None:
        """The LISTEN connection ended (a restart, a failover, shutdown): notifications may be
        missed from now on, so every subscription ends with UNAVAILABLE and its client subscribes
        again; the next subscription opens a new connection."""
        log.warning("event connection lost; ending %d subscriptions", len(self._queues))
        for queues in self._queues.values():
            for queue in queues:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(INTERRUPTED)

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        if not isinstance(payload, str):  # asyncpg passes text; its types say only object
            return
        try:
            message = json.loads(payload)
            key = UUID(message["consultation"])
        except (ValueError, KeyError, TypeError):
            return
        for queue in self._queues.get(key, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message.get("kind", "updated"))

    @contextlib.asynccontextmanager
    async def subscription(self, consultation: UUID) -> AsyncIterator[asyncio.Queue[str | object]]:
        await self._listen()
        queue: asyncio.Queue[str | object] = asyncio.Queue(maxsize=100)
        self._queues.setdefault(consultation, set()).add(queue)
        try:
            yield queue
        finally:
            self._queues[consultation].discard(queue)
            if not self._queues[consultation]:
                del self._queues[consultation]

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close(timeout=5)
            self._connection = None


async def follow_consultation(
    scope: EventScope, consultation: UUID
) -> AsyncIterator[tuple[str, Any]]:
    """(kind, row) for the subscription's first state and every change after it, while the
    caller may see the consultation, their token lasts and the transport keeps the stream."""
    principal = scope.principal
    async with scope.hub.subscription(consultation) as queue:
        row = await scope.next_event().consultation.load(consultation)
        if row is None:
            raise BadUserInput("Consultation not found")
        yield "current", row
        while not scope.closed:
            remaining = principal.expires_at - time.time()
            if remaining <= 0:
                return
            try:
                kind = await asyncio.wait_for(queue.get(), timeout=remaining)
            except TimeoutError:
                return
            if not isinstance(kind, str):  # INTERRUPTED, the one object that is not a kind
                raise ServiceUnavailable("Live events interrupted; subscribe again")
            row = await scope.next_event().consultation.load(consultation)
            if row is None:
                return
            yield kind, row
