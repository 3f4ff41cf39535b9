"""Live consultation events over WebSocket (``graphql-transport-ws``).

One LISTEN connection per replica receives IDs from PostgreSQL (migrations/0005) and fans them
out to subscribers. Each subscriber re-reads the consultation through fresh per-event loaders
under its own principal, so row-level security, the exit check and the audit trail apply to
every event exactly as to a query; a subscriber whose access ends (revoked, expired) gets no more
events. The connection is closed when the caller's token expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from gateway.audit import AccessEventWriter
from gateway.changes import AccessChanges
from gateway.config import Settings
from gateway.errors import BadUserInput, ResponseWithheld, ServiceUnavailable
from gateway.exitcheck import ExitCheck
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.loaders import Fetch, Loaders
from gateway.media import PlaybackSigner

__all__ = ["ConnectionContext", "EventHub", "follow_consultation"]

log = logging.getLogger("gateway.events")
CHANNEL = "consultation_events"
# Put in subscribers' queues when the LISTEN connection is lost: an object, so no NOTIFY payload
# (whose kinds are text) can ever equal it.
INTERRUPTED = object()


@dataclass(eq=False)
class ConnectionContext:
    """The context of one WebSocket connection: its principal, once connection_init verified
    it, and the loaders and ledger of the event being sent (replaced for each event)."""

    settings: Settings
    playback: PlaybackSigner
    fetch: Fetch
    exit_check: ExitCheck
    audit: AccessEventWriter
    hub: EventHub
    request: Any = None
    response: Any = None
    connection_params: Any = None
    principal: Principal | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ledger: Ledger = field(default_factory=Ledger)
    loaders: Loaders | None = None
    changes: AccessChanges | None = None
    watchdog: asyncio.TimerHandle | None = None

    def fresh(self) -> None:
        """New loaders and ledger for the next event: nothing is cached between events."""
        assert self.principal is not None
        self.ledger = Ledger()
        self.loaders = Loaders(self.fetch, self.principal, self.ledger)


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
                try:
                    connection = await asyncpg.connect(self._dsn)
                    await connection.add_listener(CHANNEL, self._notified)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    raise ServiceUnavailable() from exc
                connection.add_termination_listener(self._lost)
                self._connection = connection

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

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
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


async def _disclose(context: ConnectionContext, consultation: UUID, fields: list[str]) -> Any:
    """Load the consultation for this event under the caller's scope, check it at the exit and
    audit the disclosure; None when the caller may no longer see it."""
    context.fresh()
    assert context.loaders is not None and context.principal is not None
    row = await context.loaders.consultation.load(consultation)
    if row is None:
        return None
    await context.exit_check.verify(context.principal, context.ledger, context.request_id)
    await context.audit.write(
        [
            AccessEventWriter.event(
                context.principal,
                context.request_id,
                "disclosure",
                patient_id=row["patient_id"],
                objects=[{"type": "Consultation", "id": str(row["id"]), "fields": sorted(fields)}],
                detail={"subscription": "consultationEvents"},
            )
        ]
    )
    return row


async def follow_consultation(
    context: ConnectionContext, consultation: UUID, fields: list[str]
) -> AsyncIterator[tuple[str, Any]]:
    """(kind, row) for the subscription's first state and every change after it, while the
    caller may see the consultation and their token lasts."""
    principal = context.principal
    if principal is None:
        raise BadUserInput("Not authenticated")
    async with context.hub.subscription(consultation) as queue:
        try:
            row = await _disclose(context, consultation, fields)
        except ResponseWithheld:
            row = None
        if row is None:
            raise BadUserInput("Consultation not found")
        yield "current", row
        while True:
            remaining = principal.expires_at - time.time()
            if remaining <= 0:
                return
            try:
                kind = await asyncio.wait_for(queue.get(), timeout=remaining)
            except TimeoutError:
                return
            if kind is INTERRUPTED:
                raise ServiceUnavailable("Live events interrupted; subscribe again")
            try:
                row = await _disclose(context, consultation, fields)
            except ResponseWithheld:
                return
            if row is None:
                return
            yield kind, row
