"""Rate limits per principal and per field: every alias is an attempt."""

from __future__ import annotations

from collections import Counter

from gateway.guards.rate_limits import RateLimiter
from gateway.ids import encode_global_id
from tests.security.helpers import gateway_with, patient_token


def test_an_alias_brute_force_against_consultation_by_id_stalls(env):
    """Attack: guess consultation IDs 50 at a time with aliases."""
    with gateway_with(
        env, rate_limit_field_calls_per_minute=60, rate_limit_requests_per_minute=1000
    ) as client:
        token = patient_token(env, 3)
        guesses = " ".join(
            f'g{i}: consultation(id: "{encode_global_id("Consultation", i)}") {{ id }}'
            for i in range(50)
        )
        first = client.http.post(
            "/graphql",
            json={"query": f"{{ {guesses} }}"},
            headers={"authorization": f"Bearer {token}"},
        )
        second = client.http.post(
            "/graphql",
            json={"query": f"{{ {guesses} }}"},
            headers={"authorization": f"Bearer {token}"},
        )
        other = client.http.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert second.json() == {
        "errors": [{"message": "Rate limit exceeded", "extensions": {"code": "RATE_LIMITED"}}]
    }
    assert other.status_code == 200  # other fields keep their own budget


def test_requests_per_principal_are_limited_and_other_principals_are_not(env):
    with gateway_with(env, rate_limit_requests_per_minute=5) as client:
        statuses = [
            client.http.post(
                "/graphql",
                json={"query": "{ me { subject } }"},
                headers={"authorization": f"Bearer {patient_token(env, 4)}"},
            ).status_code
            for _ in range(6)
        ]
        someone_else = client.http.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={"authorization": f"Bearer {patient_token(env, 5)}"},
        )
    assert statuses == [200] * 5 + [429]
    assert someone_else.status_code == 200


def test_buckets_refill_with_time():
    now = [0.0]
    limiter = RateLimiter(60, 60, clock=lambda: now[0])
    assert limiter.check("a", Counter({"query.consultation": 60})) == 0
    assert limiter.check("a", Counter({"query.consultation": 1})) > 0
    now[0] += 1.0
    assert limiter.check("a", Counter({"query.consultation": 1})) == 0
