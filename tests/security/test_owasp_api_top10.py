"""OWASP API Security Top 10 (2023), the items a GraphQL gateway of health data must answer, on
both executors (``tests.support.executors``): free-form, and as trusted documents sent by hash to a
production gateway."""

from __future__ import annotations

import uuid

from gateway.ids import encode_global_id
from tests.security.helpers import patient_token
from tests.support.executors import trusted

NODE = trusted("query($id: ID!) { node(id: $id) { id } }")
ME = trusted("{ me { subject } }")
NOTES = trusted("{ consultations(first: 1) { edges { node { clinicianNotes } } } }")
BREAK_GLASS = trusted(
    'mutation($p: ID!) { openBreakGlass(patientId: $p, reason: "I would like to look around") '
    "{ id } }"
)
CONSENT = trusted(
    'mutation($p: ID!) { grantConsent(partnerId: $p, scopes: ["patient/Consultation.rs"], '
    'expiresAt: "2030-01-01T00:00:00+00:00") { id } }'
)


def test_api1_broken_object_level_authorization(env, gateway):
    """API1: read another patient's consultation, recording and record by ID: all null, exactly
    as for IDs that do not exist."""
    _, victim = env.patients()[1]
    targets = [
        ("Consultation", sorted(env.truth.consultations_of_patient[victim])[0]),
        ("Recording", sorted(env.truth.recordings_of_patient[victim])[0]),
        ("Patient", victim),
    ]
    for type_name, pk in targets:
        body = gateway.execute(NODE, patient_token(env), {"id": encode_global_id(type_name, pk)})
        missing = gateway.execute(
            NODE, patient_token(env), {"id": encode_global_id(type_name, uuid.uuid4())}
        )
        assert body == missing == {"data": {"node": None}}


def test_api2_broken_authentication(env, gateway):
    """API2: no token, a forged token: 401 before any GraphQL work."""
    assert gateway.post(ME, None).status_code == 401
    forged = gateway.post(ME, None, authorization="Bearer eyJhbGciOiJub25lIn0.e30.")
    assert forged.status_code == 401
    assert gateway.served[-2:] == [None, None]  # no executor ran


def test_api3_broken_object_property_level_authorization(env, gateway):
    """API3: a patient asks for clinician notes of their own consultation: null + FORBIDDEN."""
    body = gateway.execute(NOTES, patient_token(env))
    assert body["data"]["consultations"]["edges"][0]["node"]["clinicianNotes"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["errors"][0]["path"] == ["consultations", "edges", 0, "node", "clinicianNotes"]


def test_api4_unrestricted_resource_consumption(env, gateway):
    """API4: an oversized body is refused before it is read whole."""
    response = gateway.http.post(
        "/graphql",
        content=b'{"query": "' + b" " * 2_000_000 + b'{ me { subject } }"}',
        headers={
            "authorization": f"Bearer {patient_token(env)}",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 413


def test_api5_broken_function_level_authorization(env, gateway):
    """API5: a patient calls a clinician's function (break-glass); a clinician a patient's
    (consent)."""
    body = gateway.execute(
        BREAK_GLASS, patient_token(env), {"p": encode_global_id("Patient", env.patients()[1][1])}
    )
    assert body == {
        "data": None,
        "errors": [
            {
                "message": "Only a clinician may do this",
                "locations": [{"line": 1, "column": 21}],
                "path": ["openBreakGlass"],
                "extensions": {"code": "FORBIDDEN"},
            }
        ],
    }
    body = gateway.execute(
        CONSENT,
        env.token(env.clinicians()[0][0]),
        {"p": encode_global_id("Partner", uuid.uuid4())},
    )
    assert body["data"] is None
    assert [(e["message"], e["extensions"]["code"]) for e in body["errors"]] == [
        ("Only a patient may do this", "FORBIDDEN")
    ]
