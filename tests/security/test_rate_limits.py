"""Rate limits per principal and per field: every alias is an attempt. On both executors
(``tests.support.executors``): a trusted document's requests are counted by its plan's root
fields."""

from __future__ import annotations

from collections import Counter

from gateway.guards.rate_limits import RateLimiter
from gateway.ids import encode_global_id
from tests.security.helpers import patient_token
from tests.support.executors import TRUSTED_DOCUMENTS_ONLY, serve_executor, trusted

GUESS = trusted("query($id: ID!) { consultation(id: $id) { id } }")
TWO_GUESSES = trusted(
    "query($a: ID!, $b: ID!) { a: consultation(id: $a) { id } b: consultation(id: $b) { id } }"
)
ME = trusted("{ me { subject } }")
LIMITED = {
    "body": {
        "errors": [{"message": "Rate limit exceeded", "extensions": {"code": "RATE_LIMITED"}}]
    },
    "status": 429,
}


def _guess(i: int) -> dict:
    return {"id": encode_global_id("Consultation", i)}


def test_guessing_ids_through_a_documents_variables_stalls_on_either_executor(
    env, executor, manifest
):
    """Attack: the same (trusted) document sent again and again with another guessed ID; two
    aliases of the field in one request count twice."""
    with serve_executor(
        env,
        executor,
        manifest,
        rate_limit_field_calls_per_minute=10,
        rate_limit_requests_per_minute=1000,
    ) as client:
        token = patient_token(env, 3)
        answers = [client.post(GUESS, token, _guess(i)) for i in range(8)]
        pair = client.post(TWO_GUESSES, token, {"a": _guess(8)["id"], "b": _guess(9)["id"]})
        stalled = client.post(GUESS, token, _guess(10))
        other = client.post(ME, token)
    assert [a.status_code for a in answers] == [200] * 8
    assert pair.status_code == 200
    assert (stalled.status_code, stalled.json()) == (LIMITED["status"], LIMITED["body"])
    assert int(stalled.headers["retry-after"]) >= 1
    assert other.status_code == 200  # other fields keep their own budget


def test_an_alias_brute_force_against_consultation_by_id_stalls(env, executor, manifest):
    """Attack: guess consultation IDs 50 at a time with aliases, in a document of one's own (on
    the production gateway, refused at the door)."""
    with serve_executor(
        env,
        executor,
        manifest,
        rate_limit_field_calls_per_minute=60,
        rate_limit_requests_per_minute=1000,
    ) as client:
        token = patient_token(env, 3)
        guesses = " ".join(
            f'g{i}: consultation(id: "{encode_global_id("Consultation", i)}") {{ id }}'
            for i in range(50)
        )
        first = client.free_form(f"{{ {guesses} }}", token)
        second = client.free_form(f"{{ {guesses} }}", token)
    if executor == "compiled":
        assert (first.status_code, first.json()) == (403, TRUSTED_DOCUMENTS_ONLY)
        return
    assert first.status_code == 200
    assert (second.status_code, second.json()) == (LIMITED["status"], LIMITED["body"])
    assert int(second.headers["retry-after"]) >= 1


def test_requests_per_principal_are_limited_and_other_principals_are_not(env, executor, manifest):
    with serve_executor(env, executor, manifest, rate_limit_requests_per_minute=5) as client:
        statuses = [client.post(ME, patient_token(env, 4)).status_code for _ in range(6)]
        someone_else = client.post(ME, patient_token(env, 5))
    assert statuses == [200] * 5 + [429]
    assert someone_else.status_code == 200


def test_buckets_refill_with_time():
    now = [0.0]
    limiter = RateLimiter(60, 60, clock=lambda: now[0])
    assert limiter.check("a", Counter({"query.consultation": 60})) == 0
    assert limiter.check("a", Counter({"query.consultation": 1})) > 0
    now[0] += 1.0
    assert limiter.check("a", Counter({"query.consultation": 1})) == 0
