"""The audit writer: a batch of access events stored in one statement. If the write fails the
caller sends nothing (fail closed). Only the disclosure step calls it for disclosures.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.data import queries
from gateway.errors import AuditUnavailable
from gateway.ops.metrics import Metrics

__all__ = ["AccessEventWriter"]

log = logging.getLogger("gateway.audit")

Execute = Callable[..., Awaitable[Any]]


class AccessEventWriter:
    def __init__(self, execute: Execute, metrics: Metrics) -> None:
        self._execute = execute
        self._metrics = metrics

    async def write(self, events: list[dict[str, Any]]) -> None:
        """Store ``events`` in one statement; AuditUnavailable if that fails."""
        if not events:
            return
        payload = orjson.dumps(events, default=str).decode()
        try:
            await self._execute(queries.RECORD_ACCESS_EVENTS, payload)
        except Exception as exc:
            self._metrics.audit_writes.labels("failed").inc()
            log.error(
                "audit write failed; response withheld",
                exc_info=exc,
                extra={
                    "request_id": events[0]["request_id"],
                    "events": len(events),
                    "kinds": sorted({event["kind"] for event in events}),
                },
            )
            raise AuditUnavailable() from exc
        self._metrics.audit_writes.labels("ok").inc()
