"""Every route to another patient's object returns null, exactly as for an object that does not
exist: same body, no error text, no count. On both executors (``tests.support.executors``):
free-form, and as trusted documents by hash, as production runs them."""

from __future__ import annotations

import uuid

import pytest

from gateway.ids import encode_cursor, encode_global_id
from tests.support.executors import TRUSTED_DOCUMENTS_ONLY, trusted
from tests.support.json_values import all_strings

BY_ID = {
    field: trusted(f"query($id: ID!) {{ {field}(id: $id) {{ id __typename }} }}")
    for field in ("consultation", "recording", "patient")
}
NODES = trusted(
    """query($a: ID!, $b: ID!, $c: ID!) {
      a: node(id: $a) { id ... on Consultation { reason } }
      b: node(id: $b) { id ... on Recording { playbackUrl } }
      c: node(id: $c) { id ... on Patient { displayName } }
    }"""
)
FRAGMENTS = trusted(
    """
    fragment C on Consultation { id reason summary recordings { id playbackUrl } patient { id } }
    query($id: ID!) {
      consultation(id: $id) { ...C }
      node(id: $id) { ... on Consultation { ...C } ... on Node { id } }
    }"""
)
FIFTY = trusted(
    "query("
    + ", ".join(f"$a{i}: ID!" for i in range(50))
    + ") { "
    + " ".join(
        f"a{i}: consultation(id: $a{i}) {{ id reason recordings {{ id }} }}" for i in range(50)
    )
    + " }"
)
PAGES = trusted(
    """query($after: String) { consultations(first: 100, after: $after) {
        edges { node { id } } pageInfo { hasNextPage } } }"""
)
BAD_CURSOR = trusted('{ consultations(after: "not-a-cursor") { edges { node { id } } } }')
BAD_ID = trusted('{ consultation(id: "%%%") { id } }')
PAGE_OF = trusted("query($first: Int) { consultations(first: $first) { edges { node { id } } } }")
TOO_MANY = "{ consultations(first: 101) { edges { node { id } } } }"  # not a valid document
PAGING = trusted(
    """query($after: String) { consultations(first: 2, after: $after) {
        edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
)


@pytest.fixture(scope="module")
def victim_and_attacker(env):
    (attacker_subject, attacker), (_, victim) = env.patients()[0], env.patients()[1]
    consultation = sorted(env.truth.consultations_of_patient[victim])[0]
    recording = sorted(env.truth.recordings_of_patient[victim])[0]
    return {
        "token": env.token(attacker_subject),
        "attacker": attacker,
        "victim": victim,
        "consultation": encode_global_id("Consultation", consultation),
        "recording": encode_global_id("Recording", recording),
        "patient": encode_global_id("Patient", victim),
    }


def _assert_nothing_foreign(env, body, attacker):
    foreign = env.truth.global_ids_not_of(attacker)
    leaked = [s for s in all_strings(body) if any(f in s for f in foreign)]
    assert leaked == []


@pytest.mark.parametrize(
    ("field", "kind"),
    [("consultation", "consultation"), ("recording", "recording"), ("patient", "patient")],
)
def test_patient_gets_null_for_another_patients_object_by_id(
    env, gateway, victim_and_attacker, field, kind
):
    client = gateway
    attack = victim_and_attacker
    query = BY_ID[field]
    foreign = client.execute(query, attack["token"], {"id": attack[kind]})
    missing_id = encode_global_id(kind.capitalize(), uuid.uuid4())
    missing = client.execute(query, attack["token"], {"id": missing_id})
    assert foreign == {"data": {field: None}}
    assert foreign == missing


def test_node_returns_null_for_every_foreign_type(env, gateway, victim_and_attacker):
    attack = victim_and_attacker
    variables = {"a": attack["consultation"], "b": attack["recording"], "c": attack["patient"]}
    body = gateway.execute(NODES, attack["token"], variables)
    assert body == {"data": {"a": None, "b": None, "c": None}}


def test_inline_and_named_fragments_reach_nothing_foreign(env, gateway, victim_and_attacker):
    attack = victim_and_attacker
    body = gateway.execute(FRAGMENTS, attack["token"], {"id": attack["consultation"]})
    assert body == {"data": {"consultation": None, "node": None}}


def test_fifty_aliases_over_every_foreign_consultation_return_fifty_nulls(
    env, gateway, victim_and_attacker
):
    attack = victim_and_attacker
    foreign = [
        encode_global_id("Consultation", pk)
        for owner, items in sorted(env.truth.consultations_of_patient.items())
        if owner != attack["attacker"]
        for pk in sorted(items)
    ][:50]
    assert len(foreign) == 50
    variables = {f"a{i}": gid for i, gid in enumerate(foreign)}
    body = gateway.execute(FIFTY, attack["token"], variables)
    assert body == {"data": {f"a{i}": None for i in range(50)}}


def test_a_forged_cursor_from_another_patients_row_pages_only_own_rows(
    env, gateway, victim_and_attacker
):
    client = gateway
    attack = victim_and_attacker
    own = env.truth.consultations_of_patient[attack["attacker"]]
    query = PAGES
    for consultation in env.truth.consultations_of_patient[attack["victim"]]:
        # A cursor is only a position; forge one at the victim's row, and at the extremes.
        for scheduled_at in ("2100-01-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"):
            from datetime import datetime

            cursor = encode_cursor(datetime.fromisoformat(scheduled_at), consultation)
            body = client.execute(query, attack["token"], {"after": cursor})
            ids = {edge["node"]["id"] for edge in body["data"]["consultations"]["edges"]}
            assert ids <= {encode_global_id("Consultation", pk) for pk in own}
            _assert_nothing_foreign(env, body, attack["attacker"])


def test_a_malformed_cursor_is_a_clear_input_error(env, gateway, victim_and_attacker):
    body = gateway.execute(BAD_CURSOR, victim_and_attacker["token"])
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["message"] == "Invalid cursor"


def test_a_malformed_id_is_a_clear_input_error(env, gateway, victim_and_attacker):
    body = gateway.execute(BAD_ID, victim_and_attacker["token"])
    assert body["data"] == {"consultation": None}
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["path"] == ["consultation"]


def test_an_id_of_another_type_is_simply_not_found(env, gateway, victim_and_attacker):
    attack = victim_and_attacker
    own = sorted(env.truth.recordings_of_patient[attack["attacker"]])[0]
    body = gateway.execute(
        BY_ID["consultation"], attack["token"], {"id": encode_global_id("Recording", own)}
    )
    assert body == {"data": {"consultation": None}}


def test_page_size_outside_the_limits_is_refused(env, gateway, victim_and_attacker):
    token = victim_and_attacker["token"]
    for first in (-1, 101, 100_000):
        body = gateway.execute(PAGE_OF, token, {"first": first})
        assert body == {
            "data": None,
            "errors": [
                {
                    "message": "'first' must be between 0 and 100",
                    "locations": [{"line": 1, "column": 22}],
                    "path": ["consultations"],
                    "extensions": {"code": "BAD_USER_INPUT"},
                }
            ],
        }
    # Written into the document, past the limit: refused at validation. Such a document cannot
    # be a trusted one; in production it is refused before it is parsed.
    response = gateway.free_form(TOO_MANY, token)
    if gateway.executor == "compiled":
        assert (response.status_code, response.json()) == (403, TRUSTED_DOCUMENTS_ONLY)
    else:
        assert response.json() == {
            "errors": [
                {"message": "'first' may be at most 100", "extensions": {"code": "LIMIT_EXCEEDED"}}
            ]
        }


def test_paging_through_own_consultations_visits_each_exactly_once(
    env, gateway, victim_and_attacker
):
    client = gateway
    attack = victim_and_attacker
    query = PAGING
    seen, after = [], None
    while True:
        page = client.execute(query, attack["token"], {"after": after})["data"]["consultations"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    expected = {
        encode_global_id("Consultation", pk)
        for pk in env.truth.consultations_of_patient[attack["attacker"]]
    }
    assert len(seen) == len(set(seen))
    assert set(seen) == expected
