"""Fuzzing the HTTP endpoint: random JSON bodies, random strings and random documents built from
the schema's own names. Zero 5xx, and no error text that is not ours."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.helpers import patient_token

LEAKS = (
    "Traceback",
    'File "',
    "asyncpg",
    "psycopg",
    "strawberry",
    "graphql.",
    "Exception",
    "Did you mean",
    "line ",
)
NAMES = [
    "me",
    "subject",
    "consultations",
    "consultation",
    "edges",
    "node",
    "id",
    "reason",
    "recordings",
    "playbackUrl",
    "patient",
    "clinicianNotes",
    "accessLog",
    "__typename",
    "__schema",
    "first",
    "after",
    "Consultation",
    "Recording",
    "grantConsent",
    "x",
]
PUNCTUATION = [
    "{",
    "}",
    "(",
    ")",
    ":",
    "$",
    "!",
    "...",
    "@",
    "on",
    "query",
    "mutation",
    "fragment",
    '"x"',
    "1",
    "-1",
    "[",
    "]",
    "=",
    "#",
    "\n",
    "\u0000",
    "\u202e",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "query",
                    "variables",
                    "operationName",
                    "extensions",
                    "persistedQuery",
                    "sha256Hash",
                    "x",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
documents = st.lists(st.sampled_from(NAMES + PUNCTUATION), max_size=40).map(" ".join)


def _check(response) -> None:
    assert response.status_code < 500, response.text
    text = response.text
    for leak in LEAKS:
        assert leak not in text, text
    if text:
        body = json.loads(text)
        for error in body.get("errors", []):
            assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR" or (
                error["message"] == "Internal server error"
            )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=json_values)
def test_random_json_bodies(env, client, body):
    _check(
        client.http.post(
            "/graphql",
            content=json.dumps(body).encode(),
            headers={
                "authorization": f"Bearer {patient_token(env)}",
                "content-type": "application/json",
            },
        )
    )


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    document=documents,
    variables=st.none()
    | st.dictionaries(
        st.sampled_from(["id", "first", "after", "x"]),
        st.none() | st.integers() | st.text(max_size=20),
        max_size=3,
    ),
)
def test_random_documents(env, client, document, variables):
    _check(
        client.http.post(
            "/graphql",
            json={"query": document, "variables": variables},
            headers={"authorization": f"Bearer {patient_token(env)}"},
        )
    )


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/graphql", "", "application/json; charset=x"]
    ),
)
def test_random_bytes(env, client, raw, content_type):
    _check(
        client.http.post(
            "/graphql",
            content=raw,
            headers={"authorization": f"Bearer {patient_token(env)}", "content-type": content_type},
        )
    )
