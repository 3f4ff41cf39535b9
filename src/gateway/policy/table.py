"""The policy table: per GraphQL type and role, which rows and which fields, on what condition.

It is the one source of truth that every layer reads: the field permission class (layer 1), the
loaders' row scopes (layer 2, whose SQL implements each scope), the settings that row-level
security reads (layer 3), the exit check's per-type notion of whose data a caller may hold
(layer 4), ``gateway policy``, ``gateway explain``, docs/POLICY.md and the generated tests. A role
a type does not list gets nothing; a field a role does not list is denied. Read it like Hasura's
permission metadata, top to bottom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from gateway.identity import Role
from gateway.policy import scopes

__all__ = [
    "ALWAYS",
    "MUTATIONS",
    "POLICY",
    "STRUCTURAL_TYPES",
    "Condition",
    "Grant",
    "MutationRight",
    "RowScope",
    "Rule",
    "TypePolicy",
    "governed_types",
    "may_call",
    "mutation_right",
    "row_scope",
    "rule_for",
    "type_policy",
]


class RowScope(StrEnum):
    """Which rows of a type a role sees. Each scope is implemented by the loaders' SQL (api.*)
    and, independently, by the row-level security policies of migrations/."""

    OWN = "own"  # the rows of the patient the account acts for
    CONDUCTED = "conducted"  # consultations the clinician conducted, or under active break-glass
    CONSENTED = "consented"  # patients with an active consent to the partner, for the scope
    EVERYONE = "everyone"  # every patient's rows
    SELF = "self"  # the caller's own principal
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Condition:
    """What must also hold, on the row being read, for a granted field to be readable."""

    scope: str | None = None  # the token's scopes and the patient's consent both hold it
    conducted: bool = False  # the caller conducted this consultation (not break-glass)

    def describe(self) -> str:
        parts = []
        if self.scope:
            parts.append(f"scope {self.scope}")
        if self.conducted:
            parts.append("if conducted")
        return ", ".join(parts) or "yes"


ALWAYS = Condition()


@dataclass(frozen=True, slots=True)
class Grant:
    rows: RowScope
    fields: Mapping[str, Condition]

    # pragma: no mutate block (runs at import, before mutmut can switch it: scripts/mutants.py)
    def __or__(self, other: Grant) -> Grant:
        if other.rows is not self.rows:
            raise ValueError("grants of one role on one type share one row scope")
        return Grant(self.rows, {**self.fields, **other.fields})


@dataclass(frozen=True, slots=True)
class TypePolicy:
    type_name: str
    grants: Mapping[Role, Grant]
    smart_scope: str | None = None  # what a partner needs, in token and consent, to see rows


@dataclass(frozen=True, slots=True)
class Rule:
    """Why a (type, field, role) read may be allowed; its name appears in denials and docs."""

    type_name: str
    field: str
    role: Role
    rows: RowScope
    condition: Condition

    @property
    def name(self) -> str:
        return f"{self.type_name}.{self.field}@{self.role}"


# pragma: no mutate start (runs at import, before mutmut can switch it: scripts/mutants.py)
def grant(
    rows: RowScope,
    *fields: Iterable[str] | str,
    scope: str | None = None,
    conducted: bool = False,
) -> Grant:
    condition = Condition(scope, conducted) if scope or conducted else ALWAYS
    names: dict[str, Condition] = {}
    for item in fields:
        for name in [item] if isinstance(item, str) else item:
            names[name] = condition
    return Grant(rows, names)


# pragma: no mutate end


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
    "patientId",
)
# A month of the trail moved to the audit archive (``accessLog.archivedPeriods``): not patient
# data. Where its file is (``location``) is the auditors' alone: ``where`` names it only to a role
# granted ``location`` (``field_check.readable``); a patient is told whom to ask.
ARCHIVED_PERIOD = ("from", "until", "archivedAt", "deletedAt", "where")
DIRECTORY = ("id", "displayName", "specialty")

POLICY: tuple[TypePolicy, ...] = (
    TypePolicy(
        "Consultation",
        smart_scope=scopes.CONSULTATION,
        grants={
            Role.PATIENT: grant(RowScope.OWN, SCHEDULING, CLINICAL, "patient", "recordings"),
            Role.CLINICIAN: grant(RowScope.CONDUCTED, SCHEDULING, CLINICAL, "patient", "recordings")
            | grant(RowScope.CONDUCTED, "clinicianNotes", conducted=True),
            Role.SUPPORT: grant(RowScope.EVERYONE, SCHEDULING, "patient"),
            Role.PARTNER: grant(
                RowScope.CONSENTED, SCHEDULING, "summary", "patient", scope=scopes.CONSULTATION
            )
            | grant(RowScope.CONSENTED, "recordings", scope=scopes.RECORDING),
        },
    ),
    TypePolicy(
        "Recording",
        smart_scope=scopes.RECORDING,
        grants={
            Role.PATIENT: grant(RowScope.OWN, RECORDING),
            Role.CLINICIAN: grant(RowScope.CONDUCTED, RECORDING),
            Role.PARTNER: grant(RowScope.CONSENTED, RECORDING, scope=scopes.RECORDING),
        },
    ),
    TypePolicy(
        "Patient",
        smart_scope=scopes.PATIENT,
        grants={
            Role.PATIENT: grant(RowScope.OWN, "id", "displayName", "birthDate", "consultations"),
            Role.CLINICIAN: grant(
                RowScope.CONDUCTED, "id", "displayName", "birthDate", "consultations"
            ),
            Role.SUPPORT: grant(RowScope.EVERYONE, "id", "displayName", "consultations"),
            Role.PARTNER: grant(
                RowScope.CONSENTED, "id", "displayName", "birthDate", scope=scopes.PATIENT
            )
            | grant(RowScope.CONSENTED, "consultations", scope=scopes.CONSULTATION),
        },
    ),
    TypePolicy(
        "AccessEvent",
        grants={
            Role.PATIENT: grant(RowScope.OWN, ACCESS_EVENT),
            Role.AUDITOR: grant(RowScope.EVERYONE, ACCESS_EVENT),
        },
    ),
    TypePolicy(
        "AccessedObject",
        grants={
            Role.PATIENT: grant(RowScope.OWN, "type", "id", "fields", "consultation"),
            Role.AUDITOR: grant(RowScope.EVERYONE, "type", "id", "fields"),
        },
    ),
    TypePolicy(
        "ArchivedPeriod",
        grants={
            Role.PATIENT: grant(RowScope.EVERYONE, ARCHIVED_PERIOD),
            Role.AUDITOR: grant(RowScope.EVERYONE, ARCHIVED_PERIOD, "location"),
        },
    ),
    TypePolicy(
        "Consent",
        grants={
            Role.PATIENT: grant(
                RowScope.OWN,
                "id",
                "partner",
                "scopes",
                "grantedAt",
                "expiresAt",
                "revokedAt",
                "active",
            ),
        },
    ),
    TypePolicy(
        "ConsentRequest",
        grants={
            Role.PATIENT: grant(
                RowScope.OWN,
                "id",
                "partner",
                "scopes",
                "consentExpiresAt",
                "validUntil",
                "answeredAt",
                "approved",
                "redirectTo",
            ),
        },
    ),
    TypePolicy(
        "BreakGlassGrant",
        grants={
            Role.CLINICIAN: grant(
                RowScope.CONDUCTED, "id", "patient", "reason", "openedAt", "expiresAt"
            ),
        },
    ),
    TypePolicy(
        "Clinician",
        grants={
            role: grant(RowScope.EVERYONE, DIRECTORY)
            for role in (Role.PATIENT, Role.CLINICIAN, Role.SUPPORT, Role.PARTNER)
        },
    ),
    TypePolicy(
        "Partner",
        grants={role: grant(RowScope.EVERYONE, "id", "name") for role in Role},
    ),
    TypePolicy(
        "Viewer",
        grants={
            role: grant(RowScope.SELF, "subject", "role", "scopes", "patient", "clinician")
            for role in Role
        },
    ),
)

_BY_TYPE: dict[str, TypePolicy] = {policy.type_name: policy for policy in POLICY}
_RULES: dict[tuple[str, str, Role], Rule] = {
    (policy.type_name, field, role): Rule(policy.type_name, field, role, granted.rows, condition)
    for policy in POLICY
    for role, granted in policy.grants.items()
    for field, condition in granted.fields.items()
}


def rule_for(type_name: str, field: str, role: Role) -> Rule | None:
    """The rule that may allow ``role`` to read ``type_name.field``, or None (denied)."""
    return _RULES.get((type_name, field, role))


def row_scope(type_name: str, role: Role) -> RowScope:
    policy = _BY_TYPE.get(type_name)
    if policy is None:
        return RowScope.NONE
    granted = policy.grants.get(role)
    return granted.rows if granted else RowScope.NONE


def governed_types() -> frozenset[str]:
    """Every type the table governs; each of its fields must carry the field check."""
    return frozenset(_BY_TYPE)


def type_policy(type_name: str) -> TypePolicy | None:
    return _BY_TYPE.get(type_name)


@dataclass(frozen=True, slots=True)
class MutationRight:
    """Who may make a change of access. The api function of the change checks the role again in
    SQL, and row-level security a third time."""

    mutation: str
    roles: frozenset[Role]

    def describe(self) -> str:
        return " or ".join(sorted(role.value for role in self.roles))


MUTATIONS: tuple[MutationRight, ...] = (
    MutationRight("grantConsent", frozenset({Role.PATIENT})),
    MutationRight("revokeConsent", frozenset({Role.PATIENT})),
    MutationRight("requestConsent", frozenset({Role.PATIENT})),
    MutationRight("answerConsentRequest", frozenset({Role.PATIENT})),
    MutationRight("redeemConsentCode", frozenset({Role.PARTNER})),
    MutationRight("openBreakGlass", frozenset({Role.CLINICIAN})),
)

_MUTATIONS: dict[str, MutationRight] = {right.mutation: right for right in MUTATIONS}


def mutation_right(mutation: str) -> MutationRight | None:
    """Who may call ``mutation``; None for a mutation the table does not list (nobody)."""
    return _MUTATIONS.get(mutation)


def may_call(mutation: str, role: Role) -> bool:
    right = _MUTATIONS.get(mutation)
    return right is not None and role in right.roles


# Types that hold no data of their own, only lists of and links to governed objects: roots,
# connections, edges, page info, subscription events. Every other object type of the schema must
# be governed above (the schema check refuses to build otherwise).
STRUCTURAL_TYPES: frozenset[str] = frozenset(
    {
        "Query",
        "Mutation",
        "Subscription",
        "ConsultationEvent",
        "PageInfo",
        "ConsultationConnection",
        "ConsultationEdge",
        "AccessEventConnection",
        "AccessEventEdge",
    }
)
