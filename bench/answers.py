"""Before anything is timed: does every system answer each query with the same rows and fields?

Each system's response is reduced to one canonical form (the consultations by ID, in order, with
the fields the workload reads; recordings by ID with theirs). A query is comparable only if every
system answers it without errors and with equal canonical forms for the same callers; ratios are
printed for comparable queries only, and a query that is not says why.

Playback URLs are left out: the gateway signs them for the viewer (they differ on every request)
and the other systems make none.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

__all__ = ["GATEWAYS", "canonical", "compare", "digest"]

# The systems that are this gateway (global IDs), however configured.
GATEWAYS = ("gateway", "nochecks", "gateway2w", "interpreted")


def _uuid(system: str, value: str) -> str:
    if system in GATEWAYS:
        from gateway.ids import decode_global_id

        return str(decode_global_id(value)[1])
    return str(UUID(value))


def _when(value: str | None) -> str | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).astimezone(UTC).isoformat()


def _recordings(system: str, items: list[dict[str, Any]] | None) -> list[tuple] | None:
    if items is None:
        return None
    return [
        (
            _uuid(system, item.get("id") or item.get("rowId")),
            item["segmentIndex"],
            item["mode"],
            item["durationSeconds"],
        )
        for item in items
    ]


def _consultation(system: str, node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": _uuid(system, node.get("id") or node.get("rowId")),
        "scheduledAt": _when(node.get("scheduledAt")),
        "status": node.get("status"),
        "mode": node.get("mode"),
    }
    for key in ("reason", "summary", "clinicianNotes"):
        if key in node:
            out[key] = node[key]
    clinician = node.get("clinician") or node.get("clinicianByClinicianId")
    if clinician is not None:
        if "displayName" in clinician:
            out["clinician"] = clinician["displayName"]
        else:
            out["clinician"] = _uuid(system, clinician.get("id") or clinician.get("rowId"))
    patient = node.get("patient") or node.get("patientByPatientId")
    if patient is not None:
        out["patient"] = patient["displayName"]
    if "recordings" in node:
        recordings = node["recordings"]
        if isinstance(recordings, dict):  # PostGraphile: a connection
            recordings = recordings["nodes"]
        out["recordings"] = _recordings(system, recordings)
    return out


def _codes(body: dict[str, Any]) -> list[str]:
    return sorted(
        {str((e.get("extensions") or {}).get("code", e.get("message"))) for e in body["errors"]}
    )


def canonical(system: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str]:
    """(the consultations the response holds, in order; why not comparable, or "")."""
    if body.get("errors"):
        return None, f"{system} answered with errors ({', '.join(_codes(body))})"
    return _shape(system, body), ""


def digest(system: str, status: int, text: str) -> str:
    """One answer reduced to what must not change between the check before timing and any
    timed request of the same caller: the status, the error codes, and the rows and fields of
    the data (playback URLs left out). Not JSON, or not an object: its own digest."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return hashlib.sha256(f"{status} not JSON: {text}".encode()).hexdigest()
    try:
        data: Any = _shape(system, body)
    except (KeyError, TypeError, ValueError, AttributeError):
        data = body.get("data")  # not the workload's shape: compared as it is
    shape = [status, _codes(body) if body.get("errors") else [], data]
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()


def _shape(system: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body.get("data") or {}
    if "consultation" in data or "consultationByRowId" in data:
        node = data.get("consultation") or data.get("consultationByRowId")
        return [_consultation(system, node)] if node else []
    listed = data.get("consultations") or data.get("allConsultations") or {}
    nodes = [edge["node"] for edge in listed.get("edges", [])] or listed.get("nodes", [])
    return [_consultation(system, node) for node in nodes]


def compare(answers: dict[str, list[dict[str, Any]]]) -> str:
    """ "" when every system's answers (one per caller, in the same order) are equal, else why."""
    reference_system = next(iter(answers))
    reference = answers[reference_system]
    for system, answered in answers.items():
        for number, (mine, theirs) in enumerate(zip(answered, reference, strict=True)):
            if mine != theirs:
                return (
                    f"{system} and {reference_system} differ for caller {number} "
                    f"({len(mine or [])} and {len(theirs or [])} consultations)"
                )
    return ""
