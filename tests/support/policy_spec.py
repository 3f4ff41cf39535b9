"""What each role may read, written down independently of src/gateway/policy/table.py.

This is the design's role table (README's "Roles": what each role sees) and issue #4's rules,
encoded as test expectations. The generated matrix (test_policy_matrix.py) takes its cases from
the policy table and its expected outcomes from here, so deleting or loosening a rule in the
table makes a test fail, and a field added to the table without an expectation here fails too.
"""

from __future__ import annotations

from gateway.policy import scopes

ROLES = ("patient", "clinician", "support", "partner", "auditor")
CASES = ("own", "other", "consented", "revoked", "break-glass", "expired-break-glass")
EVERY = frozenset(CASES)

# Which callers see the target patient's object at all (row visibility), per type.
CLINICAL_ROWS = {
    "patient": {"own"},
    "clinician": {"own", "break-glass"},
    "support": EVERY,
    "partner": {"consented"},
    "auditor": set(),
}
ROWS = {
    "Consultation": CLINICAL_ROWS,
    "Patient": CLINICAL_ROWS,
    "Recording": {**CLINICAL_ROWS, "support": set()},
    "Clinician": {role: EVERY for role in ROLES} | {"auditor": set()},
    "Partner": {role: EVERY for role in ROLES},
    "Viewer": {role: EVERY for role in ROLES},
    "AccessEvent": {
        "patient": {"own"},
        "clinician": set(),
        "support": set(),
        "partner": set(),
        "auditor": EVERY,
    },
    "AccessedObject": {
        "patient": {"own"},
        "clinician": set(),
        "support": set(),
        "partner": set(),
        "auditor": EVERY,
    },
    # A month of the log moved to the audit archive: not patient data, told to whoever reads a
    # log (issue 26).
    "ArchivedPeriod": {
        "patient": EVERY,
        "clinician": set(),
        "support": set(),
        "partner": set(),
        "auditor": EVERY,
    },
    "Consent": {
        "patient": {"own"},
        "clinician": set(),
        "support": set(),
        "partner": set(),
        "auditor": set(),
    },
    # Returned by requestConsent and answerConsentRequest: a patient's own requests only.
    "ConsentRequest": {
        "patient": {"own"},
        "clinician": set(),
        "support": set(),
        "partner": set(),
        "auditor": set(),
    },
    # Returned by openBreakGlass: only a clinician can open one.
    "BreakGlassGrant": {
        "patient": set(),
        "clinician": EVERY,
        "support": set(),
        "partner": set(),
        "auditor": set(),
    },
}

SCHEDULING = {"patient", "clinician", "support", "partner"}
CLINICAL = {"patient", "clinician"}
RECORDING_FIELDS = (
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

# Which roles may read a field of a visible object. A value may be a dict role -> cases when
# the answer depends on the row (clinician notes: only the conducting clinician).
FIELDS: dict[str, dict[str, set[str] | dict[str, set[str]]]] = {
    "Consultation": {
        "id": SCHEDULING,
        "scheduledAt": SCHEDULING,
        "status": SCHEDULING,
        "mode": SCHEDULING,
        "clinician": SCHEDULING,
        "patient": SCHEDULING,
        "reason": CLINICAL,
        "summary": CLINICAL | {"partner"},
        "clinicianNotes": {"clinician": {"own"}},
        "recordings": CLINICAL | {"partner"},
    },
    "Recording": {field: CLINICAL | {"partner"} for field in RECORDING_FIELDS},
    "Patient": {
        "id": SCHEDULING,
        "displayName": SCHEDULING,
        "birthDate": CLINICAL | {"partner"},
        "consultations": SCHEDULING,
    },
    "Clinician": {field: SCHEDULING for field in ("id", "displayName", "specialty")},
    "Partner": {field: set(ROLES) for field in ("id", "name")},
    "Viewer": {
        field: set(ROLES) for field in ("subject", "role", "scopes", "patient", "clinician")
    },
    "AccessEvent": {
        field: {"patient", "auditor"}
        for field in (
            "occurredAt",
            "kind",
            "accessorRole",
            "accessorSubject",
            "accessorName",
            "breakGlassReason",
            "objects",
            "patientId",
        )
    },
    "AccessedObject": {
        **{field: {"patient", "auditor"} for field in ("type", "id", "fields")},
        "consultation": {"patient"},
    },
    # Where the archive's file is: the auditor's to know; a patient asks the privacy office.
    "ArchivedPeriod": {
        **{
            field: {"patient", "auditor"}
            for field in ("from", "until", "archivedAt", "deletedAt", "where")
        },
        "location": {"auditor"},
    },
    "Consent": {
        field: {"patient"}
        for field in ("id", "partner", "scopes", "grantedAt", "expiresAt", "revokedAt", "active")
    },
    "ConsentRequest": {
        field: {"patient"}
        for field in (
            "id",
            "partner",
            "scopes",
            "consentExpiresAt",
            "validUntil",
            "answeredAt",
            "approved",
            "redirectTo",
        )
    },
    "BreakGlassGrant": {
        field: {"clinician"} for field in ("id", "patient", "reason", "openedAt", "expiresAt")
    },
}

# A partner's SMART scopes (README's role table: "only fields that both the token and the consent
# allow"): what each field a partner may ask for needs in both token and consent ...
C, R, P = scopes.CONSULTATION, scopes.RECORDING, scopes.PATIENT
NEVER = None  # a field no scope opens to a partner
PARTNER_NEEDS: dict[str, dict[str, str | None]] = {
    "Consultation": {
        "id": C,
        "scheduledAt": C,
        "status": C,
        "mode": C,
        "clinician": C,
        "summary": C,
        "patient": C,
        "recordings": R,
        "reason": NEVER,
        "clinicianNotes": NEVER,
    },
    "Recording": {field: R for field in RECORDING_FIELDS},
    "Patient": {"id": P, "displayName": P, "birthDate": P, "consultations": C},
}
# ... and which scope a partner needs to see a type's rows at all.
PARTNER_ROWS = {"Consultation": C, "Recording": R, "Patient": P}


def expected(type_name: str, field: str, role: str, case: str) -> str:
    """'value', 'denied' (null + FORBIDDEN at the path) or 'invisible' (no object, no error)."""
    if case not in ROWS[type_name][role]:
        return "invisible"
    readable = FIELDS[type_name][field]
    if isinstance(readable, dict):
        return "value" if case in readable.get(role, set()) else "denied"
    return "value" if role in readable else "denied"
