"""The audit writer: a batch of access events stored in one statement. If the write fails the
caller sends nothing (fail closed). Only the disclosure step calls it for disclosures, with the
exit check's questions for the database: the events are stored only if every asked patient is one
the caller may hold (``write`` returns the ones who are not, and stores nothing then).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import orjson

from gateway.data import queries
from gateway.errors import AuditUnavailable
from gateway.identity import Principal
from gateway.ops.metrics import Metrics

__all__ = ["AccessEventWriter"]

log = logging.getLogger("gateway.audit")

Fetch = Callable[..., Awaitable[list[Any]]]


class AccessEventWriter:
    def __init__(self, fetch: Fetch, metrics: Metrics) -> None:
        self._fetch = fetch
        self._metrics = metrics

    async def write(
        self,
        events: list[dict[str, Any]],
        *,
        principal: Principal | None = None,
        asks: list[dict[str, Any]] | None = None,
    ) -> set[UUID]:
        """Store ``events`` in one statement, on the condition that every patient of ``asks`` is
        one ``principal`` may hold; returns those who are not (then nothing is stored).
        AuditUnavailable if the statement fails."""
        if not events and not asks:
            return set()
        payload = orjson.dumps(events, default=str).decode()
        try:
            if asks:
                rows = await self._fetch(
                    queries.RECORD_ACCESS_EVENTS_IF_AUTHORIZED,
                    principal.role.value,
                    principal.actor_id,
                    sorted(principal.scopes),
                    orjson.dumps(asks, default=str).decode(),
                    payload,
                )
                foreign = {row["x"] for row in rows}
            else:
                await self._fetch(queries.RECORD_ACCESS_EVENTS, payload)
                foreign = set()
        except Exception as exc:
            self._metrics.audit_writes.labels("failed").inc()
            log.error(
                "audit write failed; response withheld",
                exc_info=exc,
                extra={
                    "request_id": events[0]["request_id"] if events else None,
                    "events": len(events),
                    "kinds": sorted({event["kind"] for event in events}),
                },
            )
            raise AuditUnavailable() from exc
        if not foreign:
            self._metrics.audit_writes.labels("ok").inc()
        return foreign
