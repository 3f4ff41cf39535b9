"""The policy table: for each GraphQL type, per role, which rows and which fields.

It is the one source of truth that every layer reads: the field permission class (layer 1), the
loaders' row scopes (layer 2, whose SQL implements each scope), the settings that row-level
security reads (layer 3), the exit check's notion of a patient-owned object (layer 4),
``gateway policy``, docs and the generated tests. A role that a type does not list gets nothing;
a field a role does not list is denied. Read it like Hasura's permission metadata, top to bottom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from gateway.identity import Role

__all__ = [
    "POLICY",
    "Grant",
    "RowScope",
    "Rule",
    "TypePolicy",
    "governed_types",
    "row_scope",
    "rule_for",
    "type_policy",
]


class RowScope(StrEnum):
    """Which rows of a type a role sees. Each scope is implemented by the loaders' SQL (api.*)
    and, independently, by the row-level security policies of migrations/."""

    OWN = "own"  # the rows of the patient the account acts for
    CONDUCTED = "conducted"  # rows of consultations the clinician conducted, or under break-glass
    EVERYONE = "everyone"  # not patient data: any authenticated principal with this grant
    SELF = "self"  # the caller's own principal
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Grant:
    rows: RowScope
    fields: frozenset[str]


@dataclass(frozen=True, slots=True)
class TypePolicy:
    type_name: str
    patient_owned: bool
    grants: Mapping[Role, Grant]


@dataclass(frozen=True, slots=True)
class Rule:
    """The reason a (type, field, role) read is allowed; its name appears in denials and docs."""

    type_name: str
    field: str
    role: Role
    rows: RowScope
    patient_owned: bool

    @property
    def name(self) -> str:
        return f"{self.type_name}.{self.field}@{self.role}"


def grant(rows: RowScope, *fields: Iterable[str] | str) -> Grant:
    names: set[str] = set()
    for item in fields:
        names.update([item] if isinstance(item, str) else item)
    return Grant(rows, frozenset(names))


SCHEDULING = ("id", "scheduledAt", "status", "mode", "clinician")
CLINICAL = ("reason", "summary")
RECORDING = (
    "id",
    "consultation",
    "segmentIndex",
    "mode",
    "startedAt",
    "durationSeconds",
    "contentType",
    "byteSize",
    "playbackUrl",
)

ACCESS_EVENT = (
    "occurredAt",
    "kind",
    "accessorRole",
    "accessorSubject",
    "accessorName",
    "breakGlassReason",
    "objects",
)

POLICY: tuple[TypePolicy, ...] = (
    TypePolicy(
        "Consultation",
        patient_owned=True,
        grants={
            Role.PATIENT: grant(RowScope.OWN, SCHEDULING, CLINICAL, "patient", "recordings"),
            Role.CLINICIAN: grant(
                RowScope.CONDUCTED, SCHEDULING, CLINICAL, "patient", "recordings", "clinicianNotes"
            ),
        },
    ),
    TypePolicy(
        "Recording",
        patient_owned=True,
        grants={
            Role.PATIENT: grant(RowScope.OWN, RECORDING),
            Role.CLINICIAN: grant(RowScope.CONDUCTED, RECORDING),
        },
    ),
    TypePolicy(
        "Patient",
        patient_owned=True,
        grants={
            Role.PATIENT: grant(RowScope.OWN, "id", "displayName", "birthDate"),
            Role.CLINICIAN: grant(RowScope.CONDUCTED, "id", "displayName", "birthDate"),
        },
    ),
    TypePolicy(
        "Clinician",
        patient_owned=False,
        grants={
            Role.PATIENT: grant(RowScope.EVERYONE, "id", "displayName", "specialty"),
            Role.CLINICIAN: grant(RowScope.EVERYONE, "id", "displayName", "specialty"),
        },
    ),
    TypePolicy(
        "AccessEvent",
        patient_owned=True,
        grants={Role.PATIENT: grant(RowScope.OWN, ACCESS_EVENT)},
    ),
    TypePolicy(
        "AccessedObject",
        patient_owned=True,
        grants={Role.PATIENT: grant(RowScope.OWN, "type", "id", "fields")},
    ),
    TypePolicy(
        "Viewer",
        patient_owned=False,
        grants={
            role: grant(RowScope.SELF, "subject", "role", "patient", "clinician") for role in Role
        },
    ),
)

_BY_TYPE: dict[str, TypePolicy] = {policy.type_name: policy for policy in POLICY}
_RULES: dict[tuple[str, str, Role], Rule] = {
    (policy.type_name, field, role): Rule(
        policy.type_name, field, role, granted.rows, policy.patient_owned
    )
    for policy in POLICY
    for role, granted in policy.grants.items()
    for field in granted.fields
}


def rule_for(type_name: str, field: str, role: Role) -> Rule | None:
    """The rule allowing ``role`` to read ``type_name.field``, or None (denied)."""
    return _RULES.get((type_name, field, role))


def row_scope(type_name: str, role: Role) -> RowScope:
    policy = _BY_TYPE.get(type_name)
    if policy is None:
        return RowScope.NONE
    granted = policy.grants.get(role)
    return granted.rows if granted else RowScope.NONE


def governed_types() -> frozenset[str]:
    return frozenset(_BY_TYPE)


def type_policy(type_name: str) -> TypePolicy | None:
    return _BY_TYPE.get(type_name)
