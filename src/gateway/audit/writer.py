"""The audit writer: each batch of access events stored in one statement.

If the write fails the caller sends nothing (fail closed). Only the disclosure step calls it for
disclosures, with the exit check's questions for the database: the events are stored only if
every asked patient is one the caller may hold (``write`` returns the ones who are not, and
stores nothing then).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import orjson

from gateway.data import queries
from gateway.data.edge import Fetch
from gateway.errors import AuditUnavailable
from gateway.identity import Principal
from gateway.ops.metrics import Metrics

__all__ = ["AccessEventWriter"]

log = logging.getLogger("gateway.audit")


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
        try:
            stored, ids = _compact(events)
            payload = orjson.dumps(stored, default=str).decode()
            if asks:
                assert principal is not None  # asks are a principal's: the step passes both
                rows = await self._fetch(
                    queries.RECORD_ACCESS_EVENTS_IF_AUTHORIZED,
                    *principal.sql_scope(),
                    orjson.dumps(asks, default=str).decode(),
                    payload,
                    ids,
                )
                foreign = {row["x"] for row in rows}
            else:
                await self._fetch(queries.RECORD_ACCESS_EVENTS, payload, ids)
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


def _by_uuid(entry: dict[str, Any]) -> bool:
    keys = entry.get("ids")
    return keys is not None and all(isinstance(key, UUID) for key in keys)


def _compact(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[UUID]]:
    """The events as ``api.record_access_events`` stores them, and every uuid they hold: each
    group of objects keyed by uuids becomes a ``[type, fields, count]`` of ``object_groups``
    (the write looks up, or makes, each field set and stores its id) and its ids a slice of one
    uuid[] (``ids_from``, ``ids_count``); groups of other keys stay in ``objects``, their keys as
    text."""
    ids: list[UUID] = []
    stored = []
    for event in events:
        groups: list[list[Any]] = []
        rest: list[dict[str, Any]] = []
        start = len(ids)
        for entry in event["objects"]:
            keys = entry.get("ids")
            if _by_uuid(entry):
                groups.append([entry["type"], entry["fields"], len(keys)])
                ids += keys
            elif keys is not None:
                rest.append({**entry, "ids": [str(key) for key in keys]})
            else:
                rest.append(entry)
        compact = {**event, "objects": rest}
        if groups:
            compact |= {"object_groups": groups, "ids_from": start, "ids_count": len(ids) - start}
        stored.append(compact)
    return stored, ids
