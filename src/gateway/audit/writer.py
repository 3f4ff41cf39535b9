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
        # (type, fields) -> the id of its row in data.audit_field_sets, learnt on first use.
        self._field_sets: dict[tuple[str, tuple[str, ...]], int] = {}

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
        try:
            await self._learn_field_sets(events)
            stored, ids = _compact(events, self._field_sets)
            payload = orjson.dumps(stored, default=str).decode()
            if asks:
                rows = await self._fetch(
                    queries.RECORD_ACCESS_EVENTS_IF_AUTHORIZED,
                    principal.role.value,
                    principal.actor_id,
                    sorted(principal.scopes),
                    orjson.dumps(asks, default=str).decode(),
                    payload,
                    ids,
                )
                foreign = {row["x"] for row in rows}
            else:
                await self._fetch(queries.RECORD_ACCESS_EVENTS, payload, ids)
                foreign = set()
        except Exception as exc:
            self._field_sets.clear()  # an id learnt before (a restored database?) is asked again
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


    async def _learn_field_sets(self, events: list[dict[str, Any]]) -> None:
        """The ids of the field sets the events' uuid groups name, each asked of the database
        once per process (``api.audit_field_set`` makes it on first use)."""
        for event in events:
            for entry in event["objects"]:
                if _by_uuid(entry):
                    key = (entry["type"], tuple(entry["fields"]))
                    if key not in self._field_sets:
                        rows = await self._fetch(queries.AUDIT_FIELD_SET, key[0], list(key[1]))
                        self._field_sets[key] = rows[0]["id"]


def _by_uuid(entry: dict[str, Any]) -> bool:
    keys = entry.get("ids")
    return keys is not None and all(isinstance(key, UUID) for key in keys)


def _compact(
    events: list[dict[str, Any]], field_sets: dict[tuple[str, tuple[str, ...]], int]
) -> tuple[list[dict[str, Any]], list[UUID]]:
    """The events as ``api.record_access_events`` stores them, and every uuid they hold: each
    group of objects keyed by uuids becomes its field set's id (``object_sets``) and a count
    (``object_counts``), its ids a slice of one uuid[] (``ids_from``, ``ids_count``); groups of
    other keys stay in ``objects``, their keys as text."""
    ids: list[UUID] = []
    stored = []
    for event in events:
        sets: list[int] = []
        counts: list[int] = []
        rest: list[dict[str, Any]] = []
        start = len(ids)
        for entry in event["objects"]:
            keys = entry.get("ids")
            if _by_uuid(entry):
                sets.append(field_sets[(entry["type"], tuple(entry["fields"]))])
                counts.append(len(keys))
                ids += keys
            elif keys is not None:
                rest.append({**entry, "ids": [str(key) for key in keys]})
            else:
                rest.append(entry)
        compact = {**event, "objects": rest}
        if sets:
            compact |= {
                "object_sets": sets,
                "object_counts": counts,
                "ids_from": start,
                "ids_count": len(ids) - start,
            }
        stored.append(compact)
    return stored, ids
