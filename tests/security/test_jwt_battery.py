"""The JWT attack battery: each forged or malformed token is refused with 401."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.server import serving


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(env, **changes):
    now = int(time.time())
    claims = {
        "iss": env.identity.issuer,
        "aud": env.identity.audience,
        "sub": env.patients()[0][0],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    claims.update(changes)
    return claims


def _refused(client, token: str) -> None:
    response = client.http.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]


def test_an_embedded_jwk_is_not_trusted(env, client):
    """Attack: sign with my own key and embed its public half in the header (CVE-2018-0114)."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key()))
    for kid in (env.identity.kid, "attacker"):
        token = jwt.encode(
            _claims(env), attacker, algorithm="ES256", headers={"kid": kid, "jwk": jwk}
        )
        _refused(client, token)


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_jku_and_x5u_are_never_fetched(env, client, header):
    """Attack: point the gateway at my JWKS with jku/x5u; it must never fetch it."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key()))
    hits = []

    async def keys(request):
        hits.append(request.url.path)
        return JSONResponse({"keys": [{**jwk, "kid": "attacker", "use": "sig"}]})

    with serving(Starlette(routes=[Route("/jwks.json", keys)])) as evil:
        token = jwt.encode(
            _claims(env),
            attacker,
            algorithm="ES256",
            headers={"kid": "attacker", header: f"{evil.url}/jwks.json"},
        )
        _refused(client, token)
    assert hits == []


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/etc/passwd",
        "' OR '1'='1' --",
        'x"; DROP TABLE data.accounts; --',
        "%00",
        "a" * 300,
    ],
)
def test_kid_injection_is_refused(env, client, kid):
    """Attack: path traversal or SQL in the kid header."""
    token = jwt.encode(
        _claims(env), env.identity.private_key, algorithm="ES256", headers={"kid": kid}
    )
    _refused(client, token)


def test_unknown_critical_header_is_refused(env, client):
    """Attack: a crit extension the gateway does not understand (RFC 7515 4.1.11)."""
    token = jwt.encode(
        _claims(env),
        env.identity.private_key,
        algorithm="ES256",
        headers={"kid": env.identity.kid, "crit": ["exp-policy"], "exp-policy": "lenient"},
    )
    _refused(client, token)


def test_an_oversized_token_is_refused(env, client):
    """Attack: a 20 kB header to exhaust parsing."""
    token = jwt.encode(
        _claims(env),
        env.identity.private_key,
        algorithm="ES256",
        headers={"kid": env.identity.kid, "pad": "x" * 20_000},
    )
    _refused(client, token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
def test_alg_none_in_every_spelling(env, client, alg):
    token = f"{_b64({'alg': alg, 'kid': env.identity.kid})}.{_b64(_claims(env))}."
    _refused(client, token)


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "someone-else"},
        {"aud": None},
        {"iss": "evil"},
        {"iss": None},
        {"sub": None},
        {"sub": ""},
        {"exp": int(time.time()) - 3600},
        {"nbf": int(time.time()) + 3600},
        {"iat": int(time.time()) + 3600},
    ],
)
def test_claims_battery(env, client, change):
    claims = {k: v for k, v in _claims(env, **change).items() if v is not None}
    token = jwt.encode(
        claims, env.identity.private_key, algorithm="ES256", headers={"kid": env.identity.kid}
    )
    _refused(client, token)
