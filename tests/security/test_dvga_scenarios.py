"""The Damn Vulnerable GraphQL Application's scenarios, replayed against this gateway."""

from __future__ import annotations

from tests.security.helpers import GENERIC_INVALID, patient_token


def test_dvga_batch_query_attack(env, client):
    """DoS :: Batch Query Attack: JSON array of queries."""
    response = client.http.post(
        "/graphql",
        json=[{"query": "{ me { subject } }"}] * 50,
        headers={"authorization": f"Bearer {patient_token(env)}"},
    )
    assert response.status_code == 400


def test_dvga_deep_recursion_query_attack(env, client):
    """DoS :: Deep Recursion Query Attack: circular fragment references."""
    body = client.execute(
        "fragment A on Consultation { recordings { consultation { ...A } } } "
        "{ consultations { edges { node { ...A } } } }",
        patient_token(env),
    )
    assert body == {"errors": [GENERIC_INVALID]}


def test_dvga_resource_intensive_query(env, client):
    """DoS :: Resource Intensive Query: a huge page."""
    body = client.execute(
        "{ consultations(first: 100000) { edges { node { id } } } }", patient_token(env)
    )
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"


def test_dvga_graphiql_interface(client):
    """Information Disclosure :: GraphQL Interface: GraphiQL is not served in production."""
    response = client.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 405
    assert "graphiql" not in response.text.lower()


def test_dvga_get_based_queries(env, client):
    """CSRF / logging leaks :: GET queries put data requests in URLs."""
    response = client.http.get(
        "/graphql",
        params={"query": "{ me { subject } }"},
        headers={"authorization": f"Bearer {patient_token(env)}"},
    )
    assert response.status_code == 405


def test_dvga_form_post_csrf(env, client):
    """CSRF :: POST with a form body a browser sends cross-site without preflight."""
    response = client.http.post(
        "/graphql",
        content=b"query=%7B+me+%7B+subject+%7D+%7D",
        headers={
            "authorization": f"Bearer {patient_token(env)}",
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 415


def test_dvga_stack_trace_errors(env, client):
    """Information Disclosure :: Stack Trace Errors on bad input."""
    body = client.execute('{ consultation(id: "\\u0000\\u0001") { id } }', patient_token(env))
    assert body["errors"][0]["message"] == "Invalid ID"
    assert "Traceback" not in str(body)
