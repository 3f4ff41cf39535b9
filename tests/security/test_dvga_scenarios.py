"""The Damn Vulnerable GraphQL Application's scenarios, replayed against this gateway on both
executors (``tests.support.executors``). A scenario whose document is the attacker's own (not one a
manifest could hold) is refused at the door on the production gateway, before it is parsed."""

from __future__ import annotations

from tests.security.helpers import GENERIC_INVALID, patient_token
from tests.support.executors import TRUSTED_DOCUMENTS_ONLY, trusted

PAGE_OF = trusted("query($first: Int) { consultations(first: $first) { edges { node { id } } } }")
BY_ID = trusted("query($id: ID!) { consultation(id: $id) { id } }")


def test_dvga_batch_query_attack(env, gateway):
    """DoS :: Batch Query Attack: JSON array of queries."""
    response = gateway.http.post(
        "/graphql",
        json=[{"query": "{ me { subject } }"}] * 50,
        headers={"authorization": f"Bearer {patient_token(env)}"},
    )
    assert response.status_code == 400


def test_dvga_deep_recursion_query_attack(env, gateway):
    """DoS :: Deep Recursion Query Attack: circular fragment references."""
    response = gateway.free_form(
        "fragment A on Consultation { recordings { consultation { ...A } } } "
        "{ consultations { edges { node { ...A } } } }",
        patient_token(env),
    )
    if gateway.executor == "compiled":
        assert (response.status_code, response.json()) == (403, TRUSTED_DOCUMENTS_ONLY)
    else:
        assert response.json() == {"errors": [GENERIC_INVALID]}


def test_dvga_resource_intensive_query(env, gateway):
    """DoS :: Resource Intensive Query: a huge page, asked through a variable of a trusted
    document, and written into a document of the attacker's own."""
    body = gateway.execute(PAGE_OF, patient_token(env), {"first": 100_000})
    assert body["data"] is None
    assert [(e["message"], e["extensions"]["code"]) for e in body["errors"]] == [
        ("'first' must be between 0 and 100", "BAD_USER_INPUT")
    ]
    response = gateway.free_form(
        "{ consultations(first: 100000) { edges { node { id } } } }", patient_token(env)
    )
    if gateway.executor == "compiled":
        assert (response.status_code, response.json()) == (403, TRUSTED_DOCUMENTS_ONLY)
    else:
        assert response.json()["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"


def test_dvga_graphiql_interface(gateway):
    """Information Disclosure :: GraphQL Interface: GraphiQL is not served in production."""
    response = gateway.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 405
    assert "graphiql" not in response.text.lower()


def test_dvga_get_based_queries(env, gateway):
    """CSRF / logging leaks :: GET queries put data requests in URLs."""
    response = gateway.http.get(
        "/graphql",
        params={"query": "{ me { subject } }"},
        headers={"authorization": f"Bearer {patient_token(env)}"},
    )
    assert response.status_code == 405


def test_dvga_form_post_csrf(env, gateway):
    """CSRF :: POST with a form body a browser sends cross-site without preflight."""
    response = gateway.http.post(
        "/graphql",
        content=b"query=%7B+me+%7B+subject+%7D+%7D",
        headers={
            "authorization": f"Bearer {patient_token(env)}",
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 415


def test_dvga_stack_trace_errors(env, gateway):
    """Information Disclosure :: Stack Trace Errors on bad input."""
    body = gateway.execute(BY_ID, patient_token(env), {"id": "\u0000\u0001"})
    assert body == {
        "data": {"consultation": None},
        "errors": [
            {
                "message": "Invalid ID",
                "locations": [{"line": 1, "column": 19}],
                "path": ["consultation"],
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ],
    }
