"""Every document limit at N (served) and just past N (refused before any resolver runs).

"No resolver ran" is observed twice: the response has no ``data`` entry (the document never
reached execution), and the audit trail holds no event for the request, while the request at N,
which reads consultations, leaves one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import asyncpg
import pytest
from graphql.language import Lexer, Source, TokenKind

from gateway import create_app
from tests.support.server import GraphQLClient, serving

RESPONSE = "application/graphql-response+json"


@contextlib.contextmanager
def limited(env, **limits):
    with serving(create_app(env.settings(**limits))) as server:
        yield GraphQLClient(server.url)


def _events(env, request_id: str) -> int:
    async def count():
        connection = await asyncpg.connect(env.admin_url)
        try:
            return await connection.fetchval(
                "select count(*) from data.access_events where request_id = $1", request_id
            )
        finally:
            await connection.close()

    return asyncio.run(count())


def _send(env, client, query: str, **headers):
    request_id = uuid.uuid4().hex
    response = client.http.post(
        "/graphql",
        json={"query": query},
        headers={
            "authorization": f"Bearer {env.token(env.patients()[0][0])}",
            "accept": RESPONSE,
            "x-request-id": request_id,
            **headers,
        },
    )
    return response, request_id


def assert_served(env, client, query: str):
    response, request_id = _send(env, client, query)
    assert response.status_code == 200, response.text
    assert "errors" not in response.json(), response.text
    assert _events(env, request_id) >= 1


def assert_refused(env, client, query: str, message: str, code: str = "LIMIT_EXCEEDED"):
    response, request_id = _send(env, client, query)
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": message, "extensions": {"code": code}}]}
    assert _events(env, request_id) == 0


def test_depth(env):
    with limited(env, max_query_depth=6) as client:
        assert_served(
            env,
            client,
            "{ consultations { edges { node { recordings { consultation { id } } } } } }",
        )
        assert_refused(
            env,
            client,
            "{ consultations { edges { node { recordings { "
            "consultation { recordings { id } } } } } } }",
            "Query depth exceeds 6",
        )


def test_aliases(env):
    three = "a: consultations { edges { node { id } } } b: me { subject } c: me { role }"
    with limited(env, max_aliases=3) as client:
        assert_served(env, client, f"{{ {three} }}")
        assert_refused(
            env, client, f"{{ {three} d: me {{ role }} }}", "Query has more than 3 aliases"
        )


def test_directives(env):
    two = "id @include(if: true) reason @skip(if: false)"
    with limited(env, max_directives=2) as client:
        assert_served(env, client, f"{{ consultations {{ edges {{ node {{ {two} }} }} }} }}")
        assert_refused(
            env,
            client,
            f"{{ consultations {{ edges {{ node {{ {two} summary @include(if: true) }} }} }} }}",
            "Query has more than 2 directives",
        )


def test_ten_unknown_directives_are_one_error(env, client):
    unknown = " ".join(f"@nope{i}" for i in range(10))
    response, _ = _send(env, client, f"{{ me {unknown} {{ subject }} }}")
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": "The GraphQL document is not valid for this API",
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
        ]
    }


def test_cost(env):
    # 1 (consultations) + 10 x (edges, node, id) = 31; adding reason costs 10 more.
    query = "{ consultations(first: 10) { edges { node { id } } } }"
    with limited(env, max_query_cost=31) as client:
        assert_served(env, client, query)
        assert_refused(env, client, query.replace("id", "id reason"), "Query cost 41 exceeds 31")


def test_cost_multiplies_nested_lists(env):
    # Recordings have no `first`: each counts as ten; so 31 + 10 (recordings) + 100 (their ids).
    query = "{ consultations(first: 10) { edges { node { id recordings { id } } } } }"
    with limited(env, max_query_cost=141) as client:
        assert_served(env, client, query)
    with limited(env, max_query_cost=140) as client:
        assert_refused(env, client, query, "Query cost 141 exceeds 140")


def test_first_is_capped_in_the_document(env):
    with limited(env, page_size_max=10, page_size_default=10) as client:
        assert_served(env, client, "{ consultations(first: 10) { edges { node { id } } } }")
        assert_refused(
            env,
            client,
            "{ consultations(first: 11) { edges { node { id } } } }",
            "'first' may be at most 10",
        )


def test_first_is_capped_in_variables_too(env):
    with limited(env, page_size_max=10, page_size_default=10) as client:
        response = client.http.post(
            "/graphql",
            json={
                "query": "query($n: Int) { consultations(first: $n) { edges { node { id } } } }",
                "variables": {"n": 11},
            },
            headers={"authorization": f"Bearer {env.token(env.patients()[0][0])}"},
        )
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def _tokens(query: str) -> int:
    lexer, count = Lexer(Source(query)), 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def test_tokens(env):
    query = "{ consultations { edges { node { id } } } }"
    with limited(env, max_tokens=_tokens(query)) as client:
        assert_served(env, client, query)
        response, request_id = _send(env, client, query.replace("id", "id id"))
        assert response.status_code == 400
        assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
        assert _events(env, request_id) == 0


def test_characters(env):
    query = "{ consultations { edges { node { id } } } }"
    with limited(env, max_query_chars=200) as client:
        assert_served(env, client, query + " " * (200 - len(query)))
        response, request_id = _send(env, client, query + " " * (201 - len(query)))
        assert response.status_code == 400
        assert response.json()["errors"][0]["message"] == (
            "The query is longer than 200 characters"
        )
        assert _events(env, request_id) == 0


def test_body_size(env):
    token = env.token(env.patients()[0][0])

    def body_of(size: int) -> bytes:
        base = json.dumps({"query": "{ consultations { edges { node { id } } } }"})
        return (base[:-2] + " " * (size - len(base)) + base[-2:]).encode()

    with limited(env, max_body_bytes=2048) as client:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        assert len(body_of(2048)) == 2048
        ok = client.http.post("/graphql", content=body_of(2048), headers=headers)
        over = client.http.post("/graphql", content=body_of(2049), headers=headers)
    assert ok.status_code == 200 and "errors" not in ok.json()
    assert over.status_code == 413


@pytest.mark.parametrize(
    "document",
    [
        "fragment A on Consultation { recordings { consultation { ...A } } } "
        "{ consultations { edges { node { ...A } } } }",
        "fragment A on Consultation { ...B } fragment B on Consultation { ...A } "
        "{ consultations { edges { node { ...A } } } }",
    ],
)
def test_circular_fragments_are_refused(env, client, document):
    response, request_id = _send(env, client, document)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert _events(env, request_id) == 0


def test_batches_are_refused(env, client):
    response = client.http.post(
        "/graphql",
        json=[{"query": "{ me { subject } }"}] * 2,
        headers={"authorization": f"Bearer {env.token('support-0001')}"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "Batched requests are not supported"


def test_the_limits_keep_the_validation_cache_hitting(env, client):
    from strawberry.extensions.validation_cache import _get_validate_cache

    cache = _get_validate_cache(512)
    query = "{ consultations(first: 3) { edges { node { id scheduledAt } } } }"
    _send(env, client, query)
    before = cache.cache_info()
    for _ in range(5):
        _send(env, client, query)
    after = cache.cache_info()
    assert after.hits - before.hits == 5
    assert after.misses == before.misses
