"""OWASP API Security Top 10 (2023), the items a GraphQL gateway of health data must answer."""

from __future__ import annotations

import uuid

from gateway.ids import encode_global_id
from tests.security.helpers import patient_token


def test_api1_broken_object_level_authorization(env, client):
    """API1: read another patient's consultation, recording and record by ID: all null, exactly
    as for IDs that do not exist."""
    _, victim = env.patients()[1]
    targets = [
        encode_global_id("Consultation", sorted(env.truth.consultations_of_patient[victim])[0]),
        encode_global_id("Recording", sorted(env.truth.recordings_of_patient[victim])[0]),
        encode_global_id("Patient", victim),
    ]
    for target in targets:
        body = client.execute(
            "query($id: ID!) { node(id: $id) { id } }", patient_token(env), {"id": target}
        )
        missing = client.execute(
            "query($id: ID!) { node(id: $id) { id } }",
            patient_token(env),
            {"id": encode_global_id(target and "Patient", uuid.uuid4())},
        )
        assert body == missing == {"data": {"node": None}}


def test_api2_broken_authentication(env, client):
    """API2: no token, a forged token: 401 before any GraphQL work."""
    response = client.http.post("/graphql", json={"query": "{ me { subject } }"})
    assert response.status_code == 401
    response = client.http.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers={"authorization": "Bearer eyJhbGciOiJub25lIn0.e30."},
    )
    assert response.status_code == 401


def test_api3_broken_object_property_level_authorization(env, client):
    """API3: a patient asks for clinician notes of their own consultation: null + FORBIDDEN."""
    body = client.execute(
        "{ consultations(first: 1) { edges { node { clinicianNotes } } } }", patient_token(env)
    )
    assert body["data"]["consultations"]["edges"][0]["node"]["clinicianNotes"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_api4_unrestricted_resource_consumption(env, client):
    """API4: an oversized body is refused before it is read whole."""
    response = client.http.post(
        "/graphql",
        content=b'{"query": "' + b" " * 2_000_000 + b'{ me { subject } }"}',
        headers={
            "authorization": f"Bearer {patient_token(env)}",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 413


def test_api5_broken_function_level_authorization(env, client):
    """API5: a patient calls a clinician's function (break-glass); a clinician a patient's
    (consent)."""
    body = client.execute(
        'mutation($p: ID!) { openBreakGlass(patientId: $p, reason: "I would like to look around") '
        "{ id } }",
        patient_token(env),
        {"p": encode_global_id("Patient", env.patients()[1][1])},
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = client.execute(
        'mutation($p: ID!) { grantConsent(partnerId: $p, scopes: ["patient/Consultation.rs"], '
        'expiresAt: "2030-01-01T00:00:00+00:00") { id } }',
        env.token(env.clinicians()[0][0]),
        {"p": encode_global_id("Partner", uuid.uuid4())},
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
