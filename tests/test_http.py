"""GraphQL over HTTP: media types, status codes, limits, production defaults, masked errors."""

from __future__ import annotations

import pytest

from gateway import create_app
from gateway.config import Mode
from gateway.data.pool import Database
from tests.support.server import GraphQLClient, serving

RESPONSE_TYPE = "application/graphql-response+json"


@pytest.fixture(scope="module")
def token(env):
    return env.token(env.patients()[0][0])


def _post(client, token, body: bytes, **headers):
    return client.http.post(
        "/graphql",
        content=body,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json", **headers},
    )


def test_a_valid_request_asking_for_graphql_response_json_gets_it(client, token):
    response = _post(client, token, b'{"query": "{ me { subject } }"}', accept=RESPONSE_TYPE)
    assert response.status_code == 200
    assert response.headers["content-type"] == RESPONSE_TYPE
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("document", ["{ me { subject }", "{ me { nosuchfield } }"])
def test_an_unparsable_or_invalid_document_is_400_under_graphql_response_json(
    client, token, document
):
    import json

    response = _post(client, token, json.dumps({"query": document}).encode(), accept=RESPONSE_TYPE)
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] in {
        "GRAPHQL_PARSE_FAILED",
        "GRAPHQL_VALIDATION_FAILED",
    }


def test_an_invalid_document_is_200_without_data_under_legacy_json(client, token):
    response = _post(client, token, b'{"query": "{ me { subject }"}', accept="application/json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "data" not in response.json()


def test_an_unacceptable_accept_header_is_406(client, token):
    response = _post(client, token, b'{"query": "{ me { subject } }"}', accept="text/html")
    assert response.status_code == 406


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_body_that_is_not_json_is_415(client, token, content_type):
    response = client.http.post(
        "/graphql",
        content=b'{"query": "{ me { subject } }"}',
        headers={"authorization": f"Bearer {token}", "content-type": content_type},
    )
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Request body is not valid JSON"),
        (b'[{"query": "{ me { subject } }"}]', "Batched requests are not supported"),
        (b'"text"', "Request body must be a JSON object"),
        (b'{"query": 5}', "The 'query' parameter must be a non-empty string"),
        (
            b'{"query": "{ me { subject } }", "variables": [1]}',
            "The 'variables' parameter must be an object",
        ),
        (
            b'{"query": "{ me { subject } }", "operationName": 3}',
            "The 'operationName' parameter must be a string",
        ),
        (
            b'{"query": "query A { me { subject } }", "operationName": "B"}',
            "The document has no operation named 'B'",
        ),
        (b'{"query": "fragment F on Query { me { subject } }"}', "The document has no operation"),
        (
            b'{"query": "subscription { consultationEvents(consultationId: \\"x\\") { kind } }"}',
            "Subscriptions are served over WebSocket",
        ),
    ],
)
def test_a_malformed_request_is_400_with_a_clear_message(client, token, body, message):
    response = _post(client, token, body)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]
    }


def test_a_body_over_the_limit_is_413(client, token):
    padding = "#" + "x" * 1_100_000 + "\n"
    response = _post(client, token, f'{{"query": "{padding}{{ me {{ subject }} }}"}}'.encode())
    assert response.status_code == 413


def test_get_is_refused_in_production_and_serves_no_graphiql(client):
    for accept in ("text/html", "application/json"):
        response = client.http.get(
            "/graphql", params={"query": "{ me { subject } }"}, headers={"accept": accept}
        )
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert "graphiql" not in response.text.lower()


def test_introspection_is_refused_in_production(client, token):
    body = client.execute("{ __schema { types { name } } }", token)
    assert "data" not in body
    assert body["errors"] == [
        {
            "message": "The GraphQL document is not valid for this API",
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
        }
    ]


def test_production_errors_carry_no_suggestions(client, token):
    body = client.execute("{ consultatons { edges { node { id } } } }", token)
    assert "did you mean" not in str(body).lower()
    assert body["errors"] == [
        {
            "message": "The GraphQL document is not valid for this API",
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
        }
    ]


def test_the_request_id_is_echoed_when_sane_and_replaced_when_not(client, token):
    ok = _post(client, token, b'{"query": "{ me { subject } }"}', **{"x-request-id": "abc-123"})
    assert ok.headers["x-request-id"] == "abc-123"
    bad = _post(
        client, token, b'{"query": "{ me { subject } }"}', **{"x-request-id": "<script>" * 20}
    )
    assert bad.headers["x-request-id"] != "<script>" * 20
    assert len(bad.headers["x-request-id"]) == 32


def test_health_probes_and_metrics_need_no_token(client):
    assert client.http.get("/healthz").json() == {"status": "ok"}
    assert client.http.get("/readyz").json() == {"status": "ready"}
    assert "gateway_requests_total" in client.http.get("/metrics").text


class ExplodingDatabase(Database):
    """A real edge whose consultation loader fails with internal detail in its message."""

    def __init__(self, env):
        self._env = env
        self._inner = None

    async def fetch(self, statement, *args):
        if self._inner is None:
            self._inner = await Database.connect(self._env.settings())
        if "consultations_page" in statement:
            raise RuntimeError("relation data.secret_table at /srv/app/loader.py line 42")
        return await self._inner.fetch(statement, *args)

    async def execute(self, statement, *args):
        return await self._inner.execute(statement, *args)

    def pool_usage(self):
        return None if self._inner is None else self._inner.pool_usage()


def test_internal_errors_are_masked(env, token):
    with serving(create_app(env.settings(), database=ExplodingDatabase(env))) as server:
        body = GraphQLClient(server.url).execute(
            "{ me { subject } consultations { edges { node { id } } } }", token
        )
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "locations": [{"line": 1, "column": 18}],
            "path": ["consultations"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]
    assert "secret" not in str(body)


def test_development_mode_serves_graphiql_and_allows_introspection(env, token):
    settings = env.settings(mode=Mode.DEVELOPMENT)
    with serving(create_app(settings)) as server:
        client = GraphQLClient(server.url)
        page = client.http.get("/graphql", headers={"accept": "text/html"})
        body = client.execute("{ __schema { queryType { name } } }", token)
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
