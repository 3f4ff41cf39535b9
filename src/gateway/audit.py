"""The audit writer: a request's disclosures, denials and alerts, stored in one round trip before
the response is sent. If the write fails the response carries no data (fail closed).

Events are grouped per (request, patient, kind): each lists the objects and fields disclosed,
taken from the request's ledger, the same list the exit check verified.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

import orjson

from gateway import queries
from gateway.errors import AuditUnavailable
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.metrics import Metrics

__all__ = ["AccessEventWriter"]

log = logging.getLogger("gateway.audit")

Execute = Callable[..., Awaitable[Any]]


class AccessEventWriter:
    def __init__(self, execute: Execute, metrics: Metrics) -> None:
        self._execute = execute
        self._metrics = metrics

    @staticmethod
    def event(
        principal: Principal,
        request_id: str,
        kind: str,
        *,
        patient_id: UUID | None = None,
        objects: list[dict[str, Any]] | None = None,
        detail: dict[str, Any] | None = None,
        break_glass_reason: str | None = None,
    ) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "kind": kind,
            "issuer": principal.issuer,
            "subject": principal.subject,
            "role": principal.role.value,
            "actor_id": principal.actor_id,
            "patient_id": patient_id,
            "client_id": principal.client_id,
            "break_glass_reason": break_glass_reason,
            "objects": objects or [],
            "detail": detail or {},
        }

    @classmethod
    def events_from_ledger(
        cls, principal: Principal, request_id: str, ledger: Ledger
    ) -> list[dict[str, Any]]:
        """One disclosure event per patient whose data the response holds, and one denial event
        per patient (or none) whose fields were refused."""
        disclosed: dict[UUID, dict[tuple[str, Any], set[str]]] = {}
        for type_name, object_id, owner in ledger.objects:
            if owner is not None:
                disclosed.setdefault(owner, {}).setdefault((type_name, object_id), set())
        for type_name, object_id, owner, field in ledger.reads:
            if owner is not None:
                disclosed.setdefault(owner, {}).setdefault((type_name, object_id), set()).add(field)
        events = [
            cls.event(
                principal,
                request_id,
                "disclosure",
                patient_id=owner,
                objects=_objects(objects.items()),
                break_glass_reason=ledger.break_glass.get(owner),
            )
            for owner, objects in disclosed.items()
        ]
        denied: dict[UUID | None, dict[tuple[str, Any], set[str]]] = {}
        for denial in ledger.denials:
            key = (denial.type_name, denial.object_id)
            denied.setdefault(denial.owner, {}).setdefault(key, set()).add(denial.field)
        events += [
            cls.event(
                principal, request_id, "denial", patient_id=owner, objects=_objects(objects.items())
            )
            for owner, objects in denied.items()
        ]
        return events

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
        for event in events:
            if event["break_glass_reason"] and event["kind"] == "disclosure":
                self._metrics.break_glass_reads.inc()


def _objects(items: Iterable[tuple[tuple[str, Any], set[str]]]) -> list[dict[str, Any]]:
    """Objects keyed by (type, id as text), each id converted once, in a stable order."""
    return [
        {"type": type_name, "id": object_id, "fields": sorted(fields)}
        for type_name, object_id, fields in sorted(
            (type_name, str(object_id), fields) for (type_name, object_id), fields in items
        )
    ]
