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

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "apps" / "manifest.json"


def _operation(name: str) -> dict:
    return next(o for o in json.loads(MANIFEST.read_text())["operations"] if o["name"] == name)


@pytest.fixture(scope="module")
def trusted(env):
    with gateway_with(env, trusted_documents=MANIFEST, free_form_documents=None) as client:
        yield client


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
    from tests.subscriber import Subscriber

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
    from tests.subscriber import Subscriber

    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [
                    {
                        "id": document_id(EVENTS),
                        "name": None,
                        "type": "subscription",
                        "body": EVENTS,
                    }
                ],
            }
        )
    )
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
