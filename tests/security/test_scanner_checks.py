"""The checks common GraphQL scanners (graphql-cop, InQL, Clairvoyance) run, all coming back
empty."""

from __future__ import annotations

from tests.security.helpers import GENERIC_INVALID, patient_token


def test_made_up_and_misused_fields_get_the_same_error(env, client):
    """Clairvoyance/InQL: infer names from the difference between 'no such field' and 'field
    used wrongly'. Both get the same error, so nothing is recovered."""
    made_up = client.execute("{ consultationz { id } }", patient_token(env))
    misused = client.execute("{ consultation { id } }", patient_token(env))
    wrong_type = client.execute(
        '{ consultations(first: "x") { edges { node { id } } } }', patient_token(env)
    )
    assert made_up == misused == wrong_type == {"errors": [GENERIC_INVALID]}


def test_get_method_mutation_is_refused(env, client):
    """graphql-cop: Mutation over GET."""
    response = client.http.get(
        "/graphql",
        params={"query": 'mutation { revokeConsent(id: "x") { id } }'},
        headers={"authorization": f"Bearer {patient_token(env)}"},
    )
    assert response.status_code == 405


def test_trace_and_debug_extensions_are_absent(env, client):
    """graphql-cop: tracing or debug information in `extensions`."""
    response = client.http.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers={"authorization": f"Bearer {patient_token(env)}", "x-gateway-explain": "1"},
    )
    assert "extensions" not in response.json()


def test_unhandled_error_detection(env, client):
    """graphql-cop: a malformed document produces a clean error, not a 500."""
    for document in ("{", "}}}", "query {", "{ me { subject } } }", "\u0000"):
        response = client.http.post(
            "/graphql",
            json={"query": document},
            headers={"authorization": f"Bearer {patient_token(env)}"},
        )
        assert response.status_code == 200
        assert response.json()["errors"][0]["extensions"]["code"] in {
            "GRAPHQL_PARSE_FAILED",
            "GRAPHQL_VALIDATION_FAILED",
        }
