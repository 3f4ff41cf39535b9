"""Identity: every bad token is refused with 401 and WWW-Authenticate before any GraphQL work;
role and patient come from the accounts table, never from the token's claims."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

QUERY = "{ me { subject role patient { id } } }"
CHALLENGE = 'Bearer realm="consultation-gateway"'
INVALID = 'Bearer realm="consultation-gateway", error="invalid_token"'


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(env, subject, **changes):
    now = int(time.time())
    claims = {
        "iss": env.identity.issuer,
        "aud": env.identity.audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(env, claims, **headers):
    return jwt.encode(
        claims,
        env.identity.private_key,
        algorithm="ES256",
        headers={"kid": env.identity.kid, **headers},
    )


def _assert_refused(client, token, challenge=INVALID, **headers):
    response = client.http.post(
        "/graphql",
        content=b"{not json",
        headers={
            "content-type": "application/json",
            **({"authorization": f"Bearer {token}"} if token is not None else {}),
            **headers,
        },
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    return response


@pytest.fixture
def subject(env):
    return env.patients()[0][0]


def test_a_valid_token_is_accepted(env, client, subject):
    body = client.execute(QUERY, _signed(env, _claims(env, subject)))
    assert body["data"]["me"]["subject"] == subject


def test_no_authorization_header_is_refused_with_a_plain_challenge(client):
    _assert_refused(client, None, challenge=CHALLENGE)


def test_a_basic_scheme_is_refused(client):
    _assert_refused(client, None, challenge=CHALLENGE, authorization="Basic dXNlcjpwYXNz")


def test_a_malformed_token_is_refused(client):
    _assert_refused(client, "not.a.jwt")


def test_a_token_signed_by_another_key_under_our_kid_is_refused(env, client, subject):
    forger = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        _claims(env, subject), forger, algorithm="ES256", headers={"kid": env.identity.kid}
    )
    _assert_refused(client, token)


def test_an_expired_token_is_refused(env, client, subject):
    _assert_refused(client, _signed(env, _claims(env, subject, exp=int(time.time()) - 120)))


def test_a_token_expired_within_the_leeway_is_accepted(env, client, subject):
    body = client.execute(QUERY, _signed(env, _claims(env, subject, exp=int(time.time()) - 5)))
    assert body["data"]["me"]["subject"] == subject


def test_a_token_not_yet_valid_is_refused(env, client, subject):
    _assert_refused(client, _signed(env, _claims(env, subject, nbf=int(time.time()) + 600)))


def test_a_token_issued_in_the_future_is_refused(env, client, subject):
    _assert_refused(client, _signed(env, _claims(env, subject, iat=int(time.time()) + 600)))


def test_a_token_for_another_audience_is_refused(env, client, subject):
    _assert_refused(client, _signed(env, _claims(env, subject, aud="another-service")))


def test_a_token_from_another_issuer_is_refused(env, client, subject):
    _assert_refused(client, _signed(env, _claims(env, subject, iss="https://evil.example")))


@pytest.mark.parametrize("claim", ["exp", "aud", "iss", "sub"])
def test_a_token_missing_a_required_claim_is_refused(env, client, subject, claim):
    _assert_refused(client, _signed(env, _claims(env, subject, **{claim: None})))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_an_unsigned_token_is_refused(env, client, subject, alg):
    token = (
        f"{_b64({'alg': alg, 'typ': 'JWT', 'kid': env.identity.kid})}."
        f"{_b64(_claims(env, subject))}."
    )
    _assert_refused(client, token)


def test_an_hs256_token_keyed_with_the_public_key_is_refused(env, client, subject):
    public_pem = env.identity.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": env.identity.kid})
    payload = _b64(_claims(env, subject))
    import hashlib
    import hmac

    signature = (
        base64.urlsafe_b64encode(
            hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    _assert_refused(client, f"{header}.{payload}.{signature}")


def test_a_token_with_an_unknown_kid_is_refused(env, client, subject):
    token = jwt.encode(
        _claims(env, subject),
        env.identity.private_key,
        algorithm="ES256",
        headers={"kid": "some-other-key"},
    )
    _assert_refused(client, token)


def test_a_valid_token_for_a_subject_without_an_account_is_refused(env, client):
    _assert_refused(client, _signed(env, _claims(env, "nobody-we-know")))


def test_role_and_patient_come_from_the_accounts_table_not_from_claims(env, client):
    subject, patient = env.patients()[0]
    _, other = env.patients()[1]
    token = _signed(env, _claims(env, subject, role="clinician", patient_id=str(other)))
    body = client.execute(QUERY, token)
    from gateway.ids import encode_global_id

    assert body["data"]["me"]["role"] == "PATIENT"
    assert body["data"]["me"]["patient"]["id"] == encode_global_id("Patient", patient)
