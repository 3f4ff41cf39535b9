"""OWASP GraphQL Cheat Sheet: each recommendation, attacked against production defaults."""

from __future__ import annotations

from tests.security.helpers import GENERIC_INVALID, gateway_with, patient_token


def test_introspection_query_is_refused(env, client):
    """Attack: dump the schema with an introspection query."""
    body = client.execute("{ __schema { types { name fields { name } } } }", patient_token(env))
    assert body == {"errors": [GENERIC_INVALID]}


def test_introspection_through_type_is_refused(env, client):
    """Attack: recover one type's fields through __type instead of __schema."""
    body = client.execute(
        '{ __type(name: "Consultation") { fields { name } } }', patient_token(env)
    )
    assert body == {"errors": [GENERIC_INVALID]}


def test_field_suggestions_are_never_sent(env, client):
    """Attack: misspell fields and read 'Did you mean ...?' (Clairvoyance)."""
    for guess in ("consultaton", "recordin", "clinicanNotes", "pateint"):
        body = client.execute(f"{{ {guess} {{ id }} }}", patient_token(env))
        assert body == {"errors": [GENERIC_INVALID]}


def test_argument_enum_and_type_suggestions_are_never_sent(env, client):
    """Attack: guess argument names, enum values and types from error differences."""
    for document in (
        "{ consultations(frist: 1) { edges { node { id } } } }",
        '{ consultation(id: 5, idd: "x") { id } }',
        "{ consultations { edges { node { mode(x: AUDI) } } } }",
        "query($x: Consultaton) { me { subject } }",
        "{ consultation { id } }",
    ):
        assert client.execute(document, patient_token(env)) == {"errors": [GENERIC_INVALID]}


def test_deep_nesting_is_refused(env, client):
    """Attack: recursion through consultation <-> recordings to exhaust the server."""
    nested = "id"
    for _ in range(10):
        nested = f"recordings {{ consultation {{ {nested} }} }}"
    body = client.execute(
        f"{{ consultations {{ edges {{ node {{ {nested} }} }} }} }}", patient_token(env)
    )
    assert body == {
        "errors": [{"message": "Query depth exceeds 12", "extensions": {"code": "LIMIT_EXCEEDED"}}]
    }


def test_alias_overloading_is_refused(env, client):
    """Attack: one request, hundreds of aliased copies of a costly field."""
    aliases = " ".join(f"a{i}: me {{ subject }}" for i in range(101))
    body = client.execute(f"{{ {aliases} }}", patient_token(env))
    assert body == {
        "errors": [
            {"message": "Query has more than 100 aliases", "extensions": {"code": "LIMIT_EXCEEDED"}}
        ]
    }


def test_field_duplication_is_bounded_by_tokens(env, client):
    """Attack: repeat one field thousands of times without aliases."""
    body = client.execute("{consultations{edges{node{" + "id " * 6000 + "}}}}", patient_token(env))
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


def test_directive_overloading_is_refused(env, client):
    """Attack: hundreds of directives on one field."""
    body = client.execute(
        "{ me { subject" + " @include(if: true)" * 30 + " } }", patient_token(env)
    )
    assert body == {
        "errors": [
            {
                "message": "Query has more than 20 directives",
                "extensions": {"code": "LIMIT_EXCEEDED"},
            }
        ]
    }


def test_batching_is_off(env, client):
    """Attack: send an array of operations to multiply work per request."""
    response = client.http.post(
        "/graphql",
        json=[{"query": "{ me { subject } }"}] * 10,
        headers={"authorization": f"Bearer {patient_token(env)}"},
    )
    assert response.status_code == 400


def test_costly_lists_are_refused_before_execution(env):
    """Attack: ask for the largest page of the largest lists (cost amplification)."""
    with gateway_with(env, max_query_cost=1000) as client:
        body = client.execute(
            "{ consultations(first: 100) { edges { node { id recordings { id mode } } } } }",
            patient_token(env),
        )
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert body["errors"][0]["message"].startswith("Query cost ")


def test_errors_never_carry_stack_traces_or_sql(env):
    """Attack: provoke an internal error and read the stack trace or SQL in the response."""
    from gateway import create_app
    from tests.support import GraphQLClient, serving
    from tests.test_http import ExplodingDatabase

    with serving(create_app(env.settings(), database=ExplodingDatabase(env))) as server:
        text = (
            GraphQLClient(server.url)
            .http.post(
                "/graphql",
                json={"query": "{ consultations { edges { node { id } } } }"},
                headers={"authorization": f"Bearer {patient_token(env)}"},
            )
            .text
        )
    assert "Internal server error" in text
    for leak in ("Traceback", "secret_table", "loader.py", "RuntimeError", "asyncpg"):
        assert leak not in text
