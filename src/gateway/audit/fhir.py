"""Access events as FHIR R4 AuditEvent resources, the shape health-record systems import."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

import orjson
from asyncpg import Record

from gateway.audit.events import expand_objects, stored_objects

__all__ = ["to_audit_event"]

_EVENT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_READ = {"system": _INTERACTION, "code": "read", "display": "read"}
_CREATE = {"system": _INTERACTION, "code": "create", "display": "create"}
_UPDATE = {"system": _INTERACTION, "code": "update", "display": "update"}
_DELETE = {"system": _INTERACTION, "code": "delete", "display": "delete"}
_OUTCOME = {
    "disclosure": "0",
    "media": "0",
    "denial": "4",
    "alert": "8",
    "consent-granted": "0",
    "consent-revoked": "0",
    "break-glass-opened": "0",
    "account-changed": "0",
    "partner-changed": "0",
    "audit-archived": "0",
    "audit-archive-deleted": "0",
    "audit-restored": "0",
}
# Changes of access: (subtype, action) of each; every other kind is a read.
_CHANGE = {
    "consent-granted": (_CREATE, "C"),
    "consent-revoked": (_UPDATE, "U"),
    "break-glass-opened": (_CREATE, "C"),
    "account-changed": (_UPDATE, "U"),
    "partner-changed": (_UPDATE, "U"),
    # The trail's own months (gateway.audit.archive): moved to the archive, deleted past
    # retention, restored for a query.
    "audit-archived": (_UPDATE, "U"),
    "audit-archive-deleted": (_DELETE, "D"),
    "audit-restored": (_CREATE, "C"),
}
_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_ROLE_SYSTEM = "urn:consultation-gateway:role"


_ADMINISTRATION = {"account-changed", "partner-changed"}
_ARCHIVE = {"audit-archived", "audit-archive-deleted", "audit-restored"}


def _archive(row: Record | Mapping[str, Any]) -> dict[str, Any]:
    """The archived month an operator's archive, deletion or restore is about: its file."""
    detail = orjson.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
    return {
        "what": {
            "identifier": {
                "system": "urn:consultation-gateway:audit-archive",
                "value": detail["location"],
            }
        },
        "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        "name": detail["partition"],
    }


def _changed(row: Record | Mapping[str, Any]) -> dict[str, Any]:
    """The account or partner an operator's change is about, and the action."""
    detail = orjson.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
    changed = detail["after"]
    if row["kind"] == "account-changed":
        identifier = {"system": changed["issuer"], "value": changed["subject"]}
    else:
        identifier = {"system": "urn:consultation-gateway:Partner", "value": changed["id"]}
    return {
        "what": {"identifier": identifier},
        "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        "detail": [{"type": "action", "valueString": detail["action"]}],
    }


def to_audit_event(row: Record | Mapping[str, Any]) -> dict[str, Any]:
    """One event (a row of the trail, or of an archive) as a FHIR R4 AuditEvent."""
    objects = expand_objects(stored_objects(row))
    break_glass = row["break_glass_reason"]
    subtype, action = _CHANGE.get(row["kind"], (_READ, "R"))
    entities: list[dict[str, Any]] = []
    if row["patient_id"] is not None:
        entities.append(
            {
                "what": {"reference": f"Patient/{row['patient_id']}"},
                "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    for item in objects:
        entity: dict[str, Any] = {
            "what": {
                "identifier": {
                    "system": f"urn:consultation-gateway:{item['type']}",
                    "value": str(item["id"]),
                }
            },
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        }
        if item.get("fields"):
            entity["detail"] = [{"type": "fields", "valueString": ",".join(item["fields"])}]
        entities.append(entity)
    if row["kind"] in _ADMINISTRATION:
        entities.append(_changed(row))
    if row["kind"] in _ARCHIVE:
        entities.append(_archive(row))
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row["seq"]),
        "type": _EVENT_TYPE,
        "subtype": [subtype],
        "action": action,
        "recorded": row["occurred_at"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "outcome": _OUTCOME[row["kind"]],
        "purposeOfEvent": [
            {
                "coding": [
                    {
                        "system": _REASON,
                        "code": "ETREAT" if break_glass else "TREAT",
                    }
                ]
            }
        ],
        "agent": [
            {
                "type": {"coding": [{"system": _ROLE_SYSTEM, "code": row["role"]}]},
                "who": {"identifier": {"system": row["issuer"], "value": row["subject"]}},
                "requestor": True,
            }
        ],
        "source": {
            "observer": {"display": "consultation-gateway"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entities,
    }
    if row["kind"] != "disclosure":
        event["outcomeDesc"] = {
            "media": "media served",
            "denial": "fields denied",
            "alert": "response withheld by the exit check",
            "consent-granted": "consent granted",
            "consent-revoked": "consent revoked",
            "break-glass-opened": "break-glass opened",
            "account-changed": "account changed by an operator",
            "partner-changed": "partner changed by an operator",
            "audit-archived": "a month of the audit trail archived by an operator",
            "audit-archive-deleted": "an archived month deleted past its retention",
            "audit-restored": "an archived month restored for a query by an operator",
        }[row["kind"]]
    if break_glass:
        event["purposeOfEvent"][0]["text"] = f"break-glass: {break_glass}"
    if row["client_id"]:
        event["agent"].append(
            {
                "who": {"identifier": {"value": row["client_id"]}},
                "requestor": False,
                "type": {"coding": [{"system": _ROLE_SYSTEM, "code": "client"}]},
            }
        )
    event["extension"] = [
        {"url": "urn:consultation-gateway:request-id", "valueString": row["request_id"]}
    ]
    return event
