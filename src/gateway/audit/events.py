"""What the audit trail records of a disclosure: access events made from the request's ledger.

One event per (request, patient, kind): each lists the objects and fields disclosed, taken from
the same ledger the exit check verified, so what was checked and what was audited are one list.

An event's ``objects`` are grouped: one entry per type and set of fields, holding the keys of
every object of that type whose fields were exactly those (``{"type", "fields", "ids"}``), so a
page of fifty consultations is one entry, not fifty. The writer stores groups of uuids as the
columns ``object_groups`` and ``object_ids`` (16 bytes an id; migration 0016) and the rest as
JSON; ``stored_objects`` reads an event's row back as groups, whichever form it was stored in
(events before grouping are one ``{"type", "id", "fields"}`` per object), and
``expand_objects`` turns them into one entry per object.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import orjson

from gateway.identity import Principal
from gateway.ledger import Ledger

__all__ = ["access_event", "events_from_ledger", "expand_objects", "stored_objects"]


def access_event(
    principal: Principal,
    request_id: str,
    kind: str,
    *,
    patient_id: UUID | None = None,
    objects: list[dict[str, Any]] | None = None,
    detail: dict[str, Any] | None = None,
    break_glass_reason: str | None = None,
) -> dict[str, Any]:
    """One event as ``api.record_access_events`` takes it."""
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


def events_from_ledger(
    principal: Principal,
    request_id: str,
    ledger: Ledger,
    *,
    kind: str = "disclosure",
    detail: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One ``kind`` event per patient whose data is about to be sent (with the break-glass reason
    it was read under), and one denial event per patient (or none) whose fields were refused."""
    disclosed: dict[UUID, dict[tuple[str, Any], set[str]]] = {}
    for type_name, object_id, owner in ledger.objects:
        if owner is not None:
            disclosed.setdefault(owner, {}).setdefault((type_name, object_id), set())
    for type_name, read_id, owner, fields in ledger.read_objects:
        if owner is not None:
            disclosed.setdefault(owner, {}).setdefault((type_name, read_id), set()).update(fields)
    events = [
        access_event(
            principal,
            request_id,
            kind,
            patient_id=owner,
            objects=_objects(objects.items()),
            detail=detail,
            break_glass_reason=ledger.break_glass.get(owner),
        )
        for owner, objects in disclosed.items()
    ]
    denied: dict[UUID | None, dict[tuple[str, Any], set[str]]] = {}
    for denial in ledger.denials:
        key = (denial.type_name, denial.object_id)
        denied.setdefault(denial.owner, {}).setdefault(key, set()).add(denial.field)
    events += [
        access_event(
            principal,
            request_id,
            "denial",
            patient_id=owner,
            objects=_objects(objects.items()),
            detail=detail,
        )
        for owner, objects in denied.items()
    ]
    return events


def _objects(items: Iterable[tuple[tuple[str, Any], set[str]]]) -> list[dict[str, Any]]:
    """Objects grouped by (type, fields), each group's keys ordered as their text, the groups
    in a stable order."""
    groups: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
    for (type_name, object_id), fields in items:
        groups.setdefault((type_name, tuple(sorted(fields))), []).append(object_id)
    return [
        {"type": type_name, "fields": list(fields), "ids": sorted(ids, key=str)}
        for (type_name, fields), ids in sorted(groups.items())
    ]


def stored_objects(row: Any) -> list[dict[str, Any]]:
    """A stored event's objects as JSON groups: ``resolved_objects`` when the query selected
    ``data.event_objects(e)`` (the only way to read groups named by field set, migration 0017);
    else its ``objects`` (JSON, any form) and, for events written in 0016's form, its
    ``object_groups`` with their ``object_ids``."""
    resolved = row.get("resolved_objects")  # data.event_objects(e), when the query asked it
    if resolved is not None:
        return list(orjson.loads(resolved) if isinstance(resolved, str) else resolved)
    stored = row["objects"]
    objects = list(orjson.loads(stored) if isinstance(stored, str) else stored)
    ids = row.get("object_ids")
    if ids is not None:
        groups = row["object_groups"]
        if groups is None:
            raise ValueError("groups named by field set: select data.event_objects(e)")
        start = 0
        for type_name, fields, count in orjson.loads(groups) if isinstance(groups, str) else groups:
            objects.append(
                {
                    "type": type_name,
                    "fields": fields,
                    "ids": [str(i) for i in ids[start : start + count]],
                }
            )
            start += count
    return objects


def expand_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An event's objects, grouped or not, as one ``{"type", "id", "fields"}`` per object,
    ordered by type and id."""
    expanded: list[dict[str, Any]] = []
    for entry in objects:
        if "ids" in entry:
            fields = entry["fields"]
            expanded += [
                {"type": entry["type"], "id": str(object_id), "fields": list(fields)}
                for object_id in entry["ids"]
            ]
        else:
            expanded.append(entry)
    expanded.sort(key=lambda item: (item["type"], str(item["id"])))
    return expanded
