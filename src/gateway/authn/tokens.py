"""Bearer JWT -> verified claims.

Tokens are verified against the JWKS with an allow-list of asymmetric algorithms and ``iss``,
``aud``, ``exp``, ``nbf`` checked with a small leeway; anything unusual (critical headers, a
missing or overlong ``kid``, an ``iat`` in the future) is refused.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from gateway.authn.jwks import JwksCache
from gateway.config import Settings
from gateway.errors import AuthenticationError

__all__ = ["TokenVerifier"]

_MAX_TOKEN_BYTES = 8192


class TokenVerifier:
    def __init__(self, settings: Settings, jwks: JwksCache) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._algorithms = settings.jwt_algorithms
        self._leeway = settings.jwt_leeway_seconds
        self._jwks = jwks

    async def verify(self, token: str) -> dict[str, Any]:
        if len(token) > _MAX_TOKEN_BYTES:
            raise AuthenticationError("Token too large")
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
        try:
            key = await self._jwks.key(kid, algorithm)
        except (OSError, ValueError, httpx.HTTPError):
            key = None
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
        return claims
