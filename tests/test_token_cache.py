"""Verified tokens remembered: a client's next request is not verified again, yet nothing a full
verification would refuse is accepted from memory (expired, a withdrawn key, another token)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.authn.jwks import JwksCache
from gateway.authn.tokens import TokenVerifier
from gateway.config import load_settings
from gateway.dev.identity import DevIdentity
from gateway.errors import AuthenticationError


@pytest.fixture
def identity(tmp_path):
    return DevIdentity.load_or_create(tmp_path / "identity")


def _verifier(identity, clock=time.monotonic, **overrides) -> TokenVerifier:
    settings = load_settings(
        {},
        database_url="postgresql://nobody@127.0.0.1:1/none",
        jwt_issuer=identity.issuer,
        jwt_audience=identity.audience,
        jwks_file=identity.jwks_file,
        media_signing_keys=identity.media_keys(),
        media_root=identity.directory,
        **overrides,
    )
    jwks = JwksCache(file=identity.jwks_file, max_age_seconds=60, clock=clock)
    return TokenVerifier(settings, jwks)


def _refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthenticationError) as refused:
        asyncio.run(verifier.verify(token))
    return str(refused.value)


def test_a_token_verified_once_is_remembered_and_its_claims_cannot_be_changed_through_it(identity):
    verifier = _verifier(identity)
    token = identity.token("patient-0001")
    first = asyncio.run(verifier.verify(token))
    first["sub"] = "someone-else"  # a caller that changes what it was given
    again = asyncio.run(verifier.verify(token))  # from memory
    assert again["sub"] == "patient-0001"
    again["sub"] = "someone-else"
    assert asyncio.run(verifier.verify(token))["sub"] == "patient-0001"
    assert verifier.remembered == 1


def test_a_token_differing_from_a_remembered_one_is_verified_in_full(identity):
    """A forged signature on the same claims is not taken for the remembered token."""
    verifier = _verifier(identity)
    token = identity.token("patient-0001")
    asyncio.run(verifier.verify(token))
    head, claims, signature = token.split(".")
    forged = f"{head}.{claims}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    assert _refused(verifier, forged) == "Token invalid"
    assert verifier.remembered == 1


def test_a_remembered_token_is_refused_the_moment_it_expires(identity):
    verifier = _verifier(identity, jwt_leeway_seconds=0)
    token = identity.token("patient-0001", ttl=2)
    expires = asyncio.run(verifier.verify(token))["exp"]
    assert verifier.remembered == 1
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    assert _refused(verifier, token) == "Token expired"
    assert verifier.remembered == 0


def test_a_remembered_token_is_refused_once_its_key_is_withdrawn(identity):
    """The provider withdraws the key: when the JWKS is next fetched, tokens it verified stop
    being accepted from memory too."""
    now = [1000.0]
    verifier = _verifier(identity, clock=lambda: now[0])
    token = identity.token("patient-0001")
    asyncio.run(verifier.verify(token))
    identity.jwks_file.write_text(json.dumps({"keys": []}))
    assert asyncio.run(verifier.verify(token))["sub"] == "patient-0001"  # JWKS not refetched yet
    now[0] += 61
    assert _refused(verifier, token) == "Token signed by an unknown key"
    assert verifier.remembered == 0


def test_memory_is_bounded_and_can_be_turned_off(identity):
    verifier = _verifier(identity, token_cache_size=2)
    tokens = [identity.token(f"patient-000{n}") for n in range(1, 5)]
    for token in tokens:
        asyncio.run(verifier.verify(token))
    assert verifier.remembered == 2
    off = _verifier(identity, token_cache_size=0)
    assert asyncio.run(off.verify(tokens[0]))["sub"] == "patient-0001"
    assert off.remembered == 0
