"""Trusted documents: production accepts manifest operations by hash; free-form documents only
from accounts with the developer capability."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from gateway.guards.trusted_documents import document_id
from tests.security.helpers import gateway_with, patient_token
from tests.support.actors import ALL_SCOPES

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "apps" / "manifest.json"


def _operation(name: str) -> dict:
    return next(o for o in json.loads(MANIFEST.read_text())["operations"] if o["name"] == name)


@pytest.fixture(scope="module")
def trusted(env):
    with gateway_with(env, trusted_documents=MANIFEST, free_form_documents=None) as client:
        yield client


def _manifest(tmp_path, body: str, **operation) -> Path:
    """A manifest of one operation (``name``, ``type``, ``roles`` as given)."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": document_id(body), "body": body, **operation}],
            }
        )
    )
    return manifest


def _post(client, token, body):
    return client.http.post("/graphql", json=body, headers={"authorization": f"Bearer {token}"})


def test_the_manifest_in_the_repository_is_built_from_the_apps_operations(tmp_path):
    import subprocess
    import sys

    output = tmp_path / "manifest.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "manifest",
            "build",
            str(ROOT / "apps" / "operations"),
            str(ROOT / "apps" / "partners"),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(output.read_text()) == json.loads(MANIFEST.read_text())


def test_a_trusted_operation_runs_by_hash(env, trusted):
    operation = _operation("MyReplays")
    response = _post(
        trusted,
        patient_token(env),
        {
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": operation["id"]}},
            "variables": {"first": 2},
        },
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body
    assert len(body["data"]["consultations"]["edges"]) == 2


def test_free_form_documents_are_refused_in_production(env, trusted):
    response = _post(trusted, patient_token(env), {"query": "{ me { subject } }"})
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "TRUSTED_DOCUMENTS_ONLY"


def test_a_trusted_operation_sent_in_full_with_its_hash_runs(env, trusted):
    operation = _operation("MyAccessLog")
    response = _post(
        trusted,
        patient_token(env),
        {
            "query": operation["body"],
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": operation["id"]}},
        },
    )
    assert response.status_code == 200 and "errors" not in response.json()


def test_a_text_that_does_not_match_its_hash_is_refused(env, trusted):
    operation = _operation("MyAccessLog")
    response = _post(
        trusted,
        patient_token(env),
        {
            "query": "{ me { subject } }",
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": operation["id"]}},
        },
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "The query does not match its sha256Hash"


def test_an_unknown_hash_is_not_found(env, trusted):
    response = _post(
        trusted,
        patient_token(env),
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_id("{ x }")}}},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "extensions", [{"persistedQuery": {"sha256Hash": "abc"}}, {"persistedQuery": "x"}, "x"]
)
def test_a_malformed_persisted_query_is_refused(env, trusted, extensions):
    response = _post(trusted, patient_token(env), {"extensions": extensions})
    assert response.status_code == 400


def test_a_developer_may_send_free_form_documents(env, trusted):
    subject = env.patients()[2][0]

    async def flag(value):
        connection = await asyncpg.connect(env.admin_url)
        try:
            await connection.execute(
                "update data.accounts set developer = $2 where subject = $1", subject, value
            )
        finally:
            await connection.close()

    asyncio.run(flag(True))
    try:
        response = _post(trusted, env.token(subject), {"query": "{ me { subject } }"})
    finally:
        asyncio.run(flag(False))
    assert response.json() == {"data": {"me": {"subject": subject}}}


# --- subscriptions over WebSocket: the same rule as POST ----------------------------------------

EVENTS = (
    "subscription($id: ID!) { consultationEvents(consultationId: $id) { kind "
    "consultation { id status } } }"
)


def _subscribe_messages(client, token, payload) -> list[dict]:
    """The gateway's first answer to one ``subscribe`` with ``payload``."""
    from tests.support.subscriber import Subscriber

    async def run():
        socket = await Subscriber.connect(client.base_url, token)
        try:
            await socket.socket.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": payload})
            )
            return [await socket.next("1")]
        finally:
            await socket.close()

    return asyncio.run(run())


def test_a_free_form_subscription_is_refused_in_production_before_it_is_parsed(env, trusted):
    """Attack: bypass the trusted documents of POST by subscribing with a document of one's own
    over WebSocket."""
    subject, patient = env.patients()[0]
    own = sorted(env.truth.consultations_of_patient[patient])[0]
    from gateway.ids import encode_global_id

    variables = {"id": encode_global_id("Consultation", own)}
    for query in (EVENTS, "subscription { __typename", "{ me { subject } }"):
        [message] = _subscribe_messages(
            trusted, env.token(subject), {"query": query, "variables": variables}
        )
        assert message == {
            "id": "1",
            "type": "error",
            "payload": [
                {
                    "message": "Only trusted documents are accepted",
                    "extensions": {"code": "TRUSTED_DOCUMENTS_ONLY"},
                }
            ],
        }


def test_an_unknown_or_mismatched_hash_over_websocket_is_refused(env, trusted):
    token = patient_token(env)
    unknown = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}
    [message] = _subscribe_messages(trusted, token, unknown)
    assert message["type"] == "error"
    assert message["payload"] == [
        {
            "message": "Persisted query not found",
            "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
        }
    ]
    mismatched = {"query": EVENTS, **unknown}
    [message] = _subscribe_messages(trusted, token, mismatched)
    assert message["payload"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert message["payload"][0]["message"] == "The query does not match its sha256Hash"


def test_a_trusted_subscription_runs_by_hash(env, tmp_path):
    """The same subscription in the manifest, sent by hash, streams the consultation."""
    from gateway.ids import encode_global_id
    from tests.support.subscriber import Subscriber

    manifest = _manifest(tmp_path, EVENTS, name=None, type="subscription")
    subject, patient = env.patients()[0]
    own = sorted(env.truth.consultations_of_patient[patient])[0]
    with gateway_with(env, trusted_documents=manifest, free_form_documents=None) as client:

        async def run():
            socket = await Subscriber.connect(client.base_url, env.token(subject))
            try:
                payload = {
                    "variables": {"id": encode_global_id("Consultation", own)},
                    "extensions": {
                        "persistedQuery": {"version": 1, "sha256Hash": document_id(EVENTS)}
                    },
                }
                await socket.socket.send(
                    json.dumps({"id": "1", "type": "subscribe", "payload": payload})
                )
                return await socket.event("1")
            finally:
                await socket.close()

        event = asyncio.run(run())
    assert event["kind"] == "current"
    assert event["consultation"]["id"] == encode_global_id("Consultation", own)


# --- each trusted operation for the roles its file names -----------------------------------------


def _by_hash(name: str, variables: dict | None = None) -> dict:
    body: dict = {
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": _operation(name)["id"]}}
    }
    if variables is not None:
        body["variables"] = variables
    return body


def test_every_operation_of_the_manifest_names_its_roles():
    operations = json.loads(MANIFEST.read_text())["operations"]
    assert {o["name"]: o["roles"] for o in operations} == {
        **{name: ["patient"] for name in ("Me", "MyAccessLog", "MyConsents", "MyReplays")},
        **{name: ["patient"] for name in ("Replay", "RevokeConsent")},
        **{name: ["patient"] for name in ("RequestConsent", "AnswerConsentRequest")},
        **{
            name: ["partner"]
            for name in (
                "PartnerConsultation",
                "PartnerConsultations",
                "PartnerConsultationsWithPatients",
                "PartnerConsultationsWithRecordings",
                "PartnerMe",
                "PartnerPatient",
                "PartnerRecording",
                "RedeemConsentCode",
            )
        },
    }


@pytest.mark.parametrize(
    ("caller", "names", "meant_for"),
    [
        # The attack: a partner sends the hash of the patient app's MyReplays, to read the
        # consented patients' consultations in the shape of a patient's screen.
        ("partner", ("MyReplays", "Me", "MyConsents", "MyAccessLog"), "patient"),
        ("patient", ("PartnerConsultations", "PartnerMe"), "partner"),
    ],
)
def test_a_role_cannot_send_another_roles_operations_by_hash(
    env, trusted, caller, names, meant_for
):
    from tests.support.actors import new_partner, partner_token

    token = patient_token(env) if caller == "patient" else partner_token(env, new_partner(env)[0])
    for name in names:
        response = _post(trusted, token, _by_hash(name, {"first": 2}))
        assert response.status_code == 403, name
        assert response.json() == {
            "errors": [
                {
                    "message": f"The operation '{name}' is for {meant_for} accounts",
                    "extensions": {"code": "FORBIDDEN"},
                }
            ]
        }


def test_each_side_runs_its_own_operations(env, trusted):
    from tests.support.actors import new_partner, partner_token

    subject, _ = new_partner(env, "roles")
    partner = _post(trusted, partner_token(env, subject), _by_hash("PartnerMe"))
    assert partner.json() == {
        "data": {
            "me": {"subject": subject, "role": "PARTNER", "scopes": sorted(ALL_SCOPES.split())}
        }
    }
    patient = _post(trusted, patient_token(env), _by_hash("Me"))
    assert patient.status_code == 200 and patient.json()["data"]["me"]["role"] == "PATIENT"


def test_a_subscription_for_other_roles_is_refused_over_websocket_too(env, tmp_path):
    manifest = _manifest(
        tmp_path, EVENTS, name="ConsultationEvents", type="subscription", roles=["clinician"]
    )
    with gateway_with(env, trusted_documents=manifest, free_form_documents=None) as client:
        by_hash = {
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_id(EVENTS)}}
        }
        [message] = _subscribe_messages(client, patient_token(env), by_hash)
    assert message == {
        "id": message["id"],
        "type": "error",
        "payload": [
            {
                "message": "The operation 'ConsultationEvents' is for clinician accounts",
                "extensions": {"code": "FORBIDDEN"},
            }
        ],
    }


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ([], "'roles' must be a non-empty list"),
        (["patient", "admin"], "'roles' must be a non-empty list"),
        ("patient", "'roles' must be a non-empty list"),
    ],
)
def test_a_manifest_with_bad_roles_refuses_to_load(tmp_path, roles, message):
    from gateway.errors import ConfigurationError
    from gateway.guards.trusted_documents import FreeForm, TrustedDocuments

    manifest = _manifest(tmp_path, "query Q { me { role } }", name="Q", type="query", roles=roles)
    with pytest.raises(ConfigurationError) as refused:
        TrustedDocuments.load(manifest, FreeForm.NOBODY)
    assert refused.value.message == (
        f"GATEWAY_TRUSTED_DOCUMENTS: operation 'Q': {message} of auditor, clinician, partner, "
        "patient, support"
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "must say once which roles its operations are for"),
        (
            "# roles: patient\n# roles: partner\n",
            "must say once which roles its operations are for",
        ),
        ("# roles: patient, admins\n", "'roles' must be a non-empty list"),
        ("# roles:\n", "'roles' must be a non-empty list"),
    ],
)
def test_manifest_build_refuses_a_file_that_does_not_say_its_roles(tmp_path, header, message):
    from gateway.errors import ConfigurationError
    from gateway.guards.trusted_documents import build_manifest
    from resolvers import build_schema

    source = tmp_path / "ops.graphql"
    source.write_text(header + "query Q { me { role } }\n")
    with pytest.raises(ConfigurationError, match=message):
        build_manifest([source], build_schema()._schema)
