"""Forged and foreign ``accessLog(after:)`` cursors.

A cursor is base64url("s1|<seq>"), a position in the audit chain. A patient who hands in the seq
of another patient's event, or any forged number, still pages only through their own events (the
ones the log shows a patient, read here as superuser); a cursor that is not one is refused as
BAD_USER_INPUT "Invalid cursor" and nothing is read.
"""

from __future__ import annotations

import base64
from uuid import UUID

import pytest

from gateway.data import queries
from gateway.ids import decode_sequence_cursor, encode_global_id, encode_sequence_cursor
from tests.support.database import as_admin
from tests.support.executors import trusted
from tests.support.json_values import all_strings
from tests.support.sabotage import sabotaged_gateway

LOG = """query($after: String) { accessLog(first: 100, after: $after) {
    edges { cursor node { patientId kind accessorSubject objects { type id } } }
    pageInfo { hasNextPage hasPreviousPage } } }"""
SHOWN_TO_PATIENTS = [
    "disclosure",
    "media",
    "consent-granted",
    "consent-revoked",
    "break-glass-opened",
]
READ = "{ consultations { edges { node { id reason recordings { id } } } } }"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def pair(env, client):
    """Patients A and B with interleaved events: A, A, B, A."""
    (a_subject, a), (b_subject, b) = env.patients()[2], env.patients()[3]
    for subject in (a_subject, a_subject, b_subject, a_subject):
        client.execute(READ, env.token(subject))
    b_seq = as_admin(
        env,
        lambda c: c.fetchval(
            "select max(seq) from data.access_events where patient_id = $1 and kind = any($2)",
            b,
            SHOWN_TO_PATIENTS,
        ),
    )
    return {"A": a, "A_token": env.token(a_subject), "B": b, "B_seq": b_seq}


def _expected_seqs(env, patient: UUID, before: int, newest: int) -> list[int]:
    """The patient's own events shown to patients, with seq < ``before`` and at most ``newest``
    (the chain's last seq when the request was sent), newest first, read as superuser."""
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select seq from data.access_events where patient_id = $1 and kind = any($2) "
            "and seq < $3 and seq <= $4 order by seq desc limit 101",
            patient,
            SHOWN_TO_PATIENTS,
            before,
            newest,
        ),
    )
    return [row["seq"] for row in rows]


def _last_seq(env) -> int:
    return as_admin(env, lambda c: c.fetchval("select max(seq) from data.access_events"))


def _assert_only_own(env, body, patient: UUID) -> None:
    own = encode_global_id("Patient", patient)
    edges = body["data"]["accessLog"]["edges"]
    assert all(edge["node"]["patientId"] == own for edge in edges)
    foreign = env.truth.global_ids_not_of(patient)
    assert [s for s in all_strings(body) if any(f in s for f in foreign)] == []


def _page(env, client, pair, cursor: str):
    newest = _last_seq(env)
    body = client.execute(LOG, pair["A_token"], {"after": cursor})
    return body, newest


def test_a_cursor_at_another_patients_event_pages_only_own_older_events(env, client, pair):
    body, newest = _page(env, client, pair, encode_sequence_cursor(pair["B_seq"]))
    expected = _expected_seqs(env, pair["A"], pair["B_seq"], newest)
    assert len(expected) >= 2  # A read twice before B did
    seen = [decode_sequence_cursor(e["cursor"]) for e in body["data"]["accessLog"]["edges"]]
    assert seen == expected[:100]
    assert "errors" not in body
    _assert_only_own(env, body, pair["A"])


@pytest.mark.parametrize("seq", [0, 1, 10**12, 2**63 - 1], ids=["zero", "one", "huge", "max"])
def test_a_forged_cursor_at_any_position_pages_only_own_events(env, client, pair, seq):
    body, newest = _page(env, client, pair, encode_sequence_cursor(seq))
    assert "errors" not in body, body
    seen = [decode_sequence_cursor(e["cursor"]) for e in body["data"]["accessLog"]["edges"]]
    assert seen == _expected_seqs(env, pair["A"], seq, newest)[:100]
    _assert_only_own(env, body, pair["A"])


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "",
        _b64("s1|-5"),
        _b64("s1|abc"),
        _b64("s1|"),
        _b64("s2|5"),
        _b64("s1|5|6"),
        _b64("s1|\u00b2"),  # a superscript two: isdigit() but not int()
        _b64("c1|2026-01-01T00:00:00+00:00|00000000-0000-0000-0000-000000000000"),
        _b64("s1|" + "9" * 300),
    ],
    ids=[
        "garbage",
        "empty",
        "negative",
        "letters",
        "no-number",
        "other-version",
        "extra-part",
        "superscript-digit",
        "consultation-cursor",
        "overlong",
    ],
)
def test_a_malformed_cursor_is_refused_as_invalid_and_reads_nothing(env, client, pair, cursor):
    body = client.execute(LOG, pair["A_token"], {"after": cursor})
    assert body == {
        "data": None,
        "errors": [
            {
                "message": "Invalid cursor",
                "locations": [{"line": 1, "column": 25}],
                "path": ["accessLog"],
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ],
    }


def test_a_cursor_past_the_database_range_is_refused_as_invalid(env, client, pair):
    # 2**63 does not fit the chain's bigint sequence: refused like any other non-cursor.
    body = client.execute(LOG, pair["A_token"], {"after": encode_sequence_cursor(2**63)})
    assert body["data"] is None
    assert [(e["message"], e["extensions"]["code"]) for e in body["errors"]] == [
        ("Invalid cursor", "BAD_USER_INPUT")
    ]


def test_a_clinician_with_a_patients_cursor_gets_no_events(env, client, pair):
    body = client.execute(
        LOG, env.token(env.clinicians()[0][0]), {"after": encode_sequence_cursor(pair["B_seq"])}
    )
    assert body == {
        "data": {
            "accessLog": {
                "edges": [],
                "pageInfo": {"hasNextPage": False, "hasPreviousPage": True},
            }
        }
    }


PAGES = {
    first: trusted(f"{{ accessLog(first: {first}) {{ edges {{ node {{ kind }} }} }} }}")
    for first in (1, 3)
}


@pytest.mark.parametrize("first", [1, 3])
def test_a_page_reads_one_row_more_than_it_shows_and_no_more(env, executor, manifest, first):
    """The page's extra row says whether there is a next one; reading more (the whole log of a
    patient with years of events) would be the cost of a page without any of its benefit."""
    asked = []

    def record(role, actor, scopes, limit, before, by_others, emergency):
        asked.append(limit)
        return [role, actor, scopes, limit, before, by_others, emergency]

    subject = env.patients()[0][0]
    with sabotaged_gateway(env, executor, manifest) as (client, database):
        database.arguments[queries.ACCESS_EVENTS_PAGE] = record
        body = client.execute(PAGES[first], env.token(subject))
    assert len(body["data"]["accessLog"]["edges"]) <= first
    assert asked == [first + 1]
