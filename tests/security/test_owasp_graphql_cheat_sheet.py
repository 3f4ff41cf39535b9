"""OWASP GraphQL Cheat Sheet: each recommendation, attacked against production defaults, on both
executors (``tests.support.executors``). Every attack here is a document of the attacker's own: the
interpreted gateway (free-form documents open) refuses it by its validation rules and limits;
the production gateway (trusted documents, free-form for developer accounts only) refuses it at
the door, before it is parsed."""

from __future__ import annotations

import pytest

from tests.security.helpers import GENERIC_INVALID, patient_token
from tests.support.executors import TRUSTED_DOCUMENTS_ONLY, serve_executor, trusted

CONSULTATIONS = trusted("{ consultations { edges { node { id } } } }")


def _refused(gateway, document: str, interpreted: dict) -> None:
    """``document`` sent by an attacker: refused by the interpreted gateway with
    ``interpreted``, by the production gateway as not a trusted document."""
    response = gateway.free_form(document, patient_token(gateway.env))
    if gateway.executor == "compiled":
        assert (response.status_code, response.json()) == (403, TRUSTED_DOCUMENTS_ONLY)
    else:
        assert response.json() == interpreted


@pytest.fixture(scope="module")
def attacked(env, gateway):
    gateway.env = env
    return gateway


def test_introspection_query_is_refused(attacked):
    """Attack: dump the schema with an introspection query."""
    _refused(
        attacked, "{ __schema { types { name fields { name } } } }", {"errors": [GENERIC_INVALID]}
    )


def test_introspection_through_type_is_refused(attacked):
    """Attack: recover one type's fields through __type instead of __schema."""
    _refused(
        attacked,
        '{ __type(name: "Consultation") { fields { name } } }',
        {"errors": [GENERIC_INVALID]},
    )


def test_field_suggestions_are_never_sent(attacked):
    """Attack: misspell fields and read 'Did you mean ...?' (Clairvoyance)."""
    for guess in ("consultaton", "recordin", "clinicanNotes", "pateint"):
        _refused(attacked, f"{{ {guess} {{ id }} }}", {"errors": [GENERIC_INVALID]})


def test_argument_enum_and_type_suggestions_are_never_sent(attacked):
    """Attack: guess argument names, enum values and types from error differences."""
    for document in (
        "{ consultations(frist: 1) { edges { node { id } } } }",
        '{ consultation(id: 5, idd: "x") { id } }',
        "{ consultations { edges { node { mode(x: AUDI) } } } }",
        "query($x: Consultaton) { me { subject } }",
        "{ consultation { id } }",
    ):
        _refused(attacked, document, {"errors": [GENERIC_INVALID]})


def test_deep_nesting_is_refused(attacked):
    """Attack: recursion through consultation <-> recordings to exhaust the server."""
    nested = "id"
    for _ in range(10):
        nested = f"recordings {{ consultation {{ {nested} }} }}"
    _refused(
        attacked,
        f"{{ consultations {{ edges {{ node {{ {nested} }} }} }} }}",
        {
            "errors": [
                {"message": "Query depth exceeds 12", "extensions": {"code": "LIMIT_EXCEEDED"}}
            ]
        },
    )


def test_alias_overloading_is_refused(attacked):
    """Attack: one request, hundreds of aliased copies of a costly field."""
    aliases = " ".join(f"a{i}: me {{ subject }}" for i in range(101))
    _refused(
        attacked,
        f"{{ {aliases} }}",
        {
            "errors": [
                {
                    "message": "Query has more than 100 aliases",
                    "extensions": {"code": "LIMIT_EXCEEDED"},
                }
            ]
        },
    )


def test_field_duplication_is_bounded_by_tokens(attacked):
    """Attack: repeat one field thousands of times without aliases."""
    document = "{consultations{edges{node{" + "id " * 6000 + "}}}}"
    response = attacked.free_form(document, patient_token(attacked.env))
    if attacked.executor == "compiled":
        assert (response.status_code, response.json()) == (403, TRUSTED_DOCUMENTS_ONLY)
    else:
        assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


def test_directive_overloading_is_refused(attacked):
    """Attack: hundreds of directives on one field."""
    _refused(
        attacked,
        "{ me { subject" + " @include(if: true)" * 30 + " } }",
        {
            "errors": [
                {
                    "message": "Query has more than 20 directives",
                    "extensions": {"code": "LIMIT_EXCEEDED"},
                }
            ]
        },
    )


def test_batching_is_off(env, gateway):
    """Attack: send an array of operations to multiply work per request."""
    response = gateway.http.post(
        "/graphql",
        json=[{"query": "{ me { subject } }"}] * 10,
        headers={"authorization": f"Bearer {patient_token(env)}"},
    )
    assert response.status_code == 400


def test_costly_lists_are_refused_before_execution(env, executor, manifest):
    """Attack: ask for the largest page of the largest lists (cost amplification)."""
    with serve_executor(env, executor, manifest, max_query_cost=1000) as client:
        response = client.free_form(
            "{ consultations(first: 100) { edges { node { id recordings { id mode } } } } }",
            patient_token(env),
        )
    if executor == "compiled":
        assert (response.status_code, response.json()) == (403, TRUSTED_DOCUMENTS_ONLY)
    else:
        body = response.json()
        assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
        assert body["errors"][0]["message"].startswith("Query cost ")


def test_errors_never_carry_stack_traces_or_sql(env, executor, manifest):
    """Attack: provoke an internal error and read the stack trace or SQL in the response."""
    from tests.test_http import ExplodingDatabase

    with serve_executor(env, executor, manifest, database=ExplodingDatabase(env)) as client:
        text = client.post(CONSULTATIONS, patient_token(env)).text
    assert "Internal server error" in text
    for leak in ("Traceback", "secret_table", "loader.py", "RuntimeError", "asyncpg"):
        assert leak not in text
