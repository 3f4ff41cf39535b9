"""Bearer JWT -> verified claims.

Tokens are verified against the JWKS with an allow-list of asymmetric algorithms and ``iss``,
``aud``, ``exp``, ``nbf`` checked with a small leeway; anything unusual (critical headers, a
missing or overlong ``kid``, an ``iat`` in the future) is refused.

A verified token is remembered by its SHA-256 (never the token itself), bounded, least recently
used first out, until the moment the full check would refuse it as expired (``exp`` plus the
leeway). A remembered token is accepted again only while the JWKS still gives the very key that
verified it: a key withdrawn or replaced (the JWKS refetched) sends the token through the full
check again. Failures are never remembered.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, NamedTuple

import httpx
import jwt

from gateway.authn.jwks import JwksCache
from gateway.config import Settings
from gateway.errors import AuthenticationError

__all__ = ["TokenVerifier"]

_MAX_TOKEN_BYTES = 8192


class _Verified(NamedTuple):
    claims: dict[str, Any]
    until: float  # wall-clock time from which the full check says "Token expired" (PyJWT's)
    kid: str
    algorithm: str
    key: Any  # the PyJWK that verified it


class TokenVerifier:
    def __init__(self, settings: Settings, jwks: JwksCache) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._algorithms = settings.jwt_algorithms
        self._leeway = settings.jwt_leeway_seconds
        self._jwks = jwks
        self._capacity = settings.token_cache_size
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()

    @property
    def remembered(self) -> int:
        """How many verified tokens are remembered now."""
        return len(self._verified)

    async def verify(self, token: str) -> dict[str, Any]:
        if len(token) > _MAX_TOKEN_BYTES:
            raise AuthenticationError("Token too large")
        if not self._capacity:
            return await self._verify(token)
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is not None:
            if (
                time.time() < known.until
                and (await self._known_key(known.kid, known.algorithm)) is known.key
            ):
                self._verified.move_to_end(digest)
                return dict(known.claims)
            self._verified.pop(digest, None)
        claims, kid, algorithm, key = await self._verify_with_key(token)
        self._verified[digest] = _Verified(
            dict(claims), claims["exp"] + self._leeway, kid, algorithm, key
        )
        if len(self._verified) > self._capacity:
            self._verified.popitem(last=False)
        return claims

    async def _known_key(self, kid: str, algorithm: str) -> Any:
        try:
            return await self._jwks.key(kid, algorithm)
        except (OSError, ValueError, httpx.HTTPError):
            return None

    async def _verify(self, token: str) -> dict[str, Any]:
        return (await self._verify_with_key(token))[0]

    async def _verify_with_key(self, token: str) -> tuple[dict[str, Any], str, str, Any]:
        """The full check: (claims, kid, algorithm, the key that verified them)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("Malformed token") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthenticationError("Token algorithm not allowed")
        if "crit" in header:
            raise AuthenticationError("Token has unsupported critical headers")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise AuthenticationError("Token has no usable key id")
        key = await self._known_key(kid, algorithm)
        if key is None:
            raise AuthenticationError("Token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("Token not yet valid") from None
        except jwt.PyJWTError:
            raise AuthenticationError("Token invalid") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise AuthenticationError("Token invalid")
        iat = claims.get("iat")
        if isinstance(iat, int | float) and iat > time.time() + self._leeway:
            raise AuthenticationError("Token not yet valid")
        return claims, kid, algorithm, key
