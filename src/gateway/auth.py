"""Who is this? Bearer JWT -> verified claims -> account -> Principal.

Tokens are verified against the identity provider's JWKS (a URL, cached, refreshed at most every
``jwks_min_refresh_seconds`` when an unknown ``kid`` arrives; or a file) with an allow-list of
asymmetric algorithms and ``iss``, ``aud``, ``exp``, ``nbf`` checked with a small leeway. The role
and the party the caller acts for come from the accounts table by (issuer, subject).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jwt

from gateway import queries
from gateway.config import Settings
from gateway.errors import AuthenticationError
from gateway.identity import Principal, Role

__all__ = ["Authenticator", "JwksCache", "TokenVerifier"]

_MAX_TOKEN_BYTES = 8192


class JwksCache:
    """The identity provider's signing keys by ``kid``."""

    def __init__(
        self,
        *,
        url: str | None = None,
        file: Path | None = None,
        min_refresh_seconds: float = 30.0,
        max_age_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._file = file
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._parsed: dict[tuple[str, str], jwt.PyJWK | None] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str, algorithm: str) -> jwt.PyJWK | None:
        """The key ``kid`` usable with ``algorithm``, or None. An unknown kid triggers at most
        one refresh per ``min_refresh_seconds``, however many tokens name it; keys older than
        ``max_age_seconds`` are refetched, so a key the provider withdrew stops verifying."""
        if kid not in self._keys or self._stale():
            async with self._lock:
                if (kid not in self._keys and self._may_refresh()) or self._stale():
                    try:
                        await self.refresh()
                    except (OSError, ValueError, httpx.HTTPError):
                        if not self._keys:
                            raise
        entry = self._keys.get(kid)
        if entry is None:
            return None
        if (kid, algorithm) not in self._parsed:
            self._parsed[(kid, algorithm)] = self._parse(entry, algorithm)
        return self._parsed[(kid, algorithm)]

    @staticmethod
    def _parse(entry: dict[str, Any], algorithm: str) -> jwt.PyJWK | None:
        if entry.get("alg", algorithm) != algorithm:
            return None
        try:
            return jwt.PyJWK(entry, algorithm=algorithm)
        except jwt.PyJWTError:
            return None

    def _stale(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at >= self._max_age

    def _may_refresh(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._min_refresh

    async def refresh(self) -> None:
        self._fetched_at = self._clock()
        if self._file is not None:
            document = json.loads(self._file.read_text())
        else:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(self._url)
                response.raise_for_status()
                document = response.json()
        self._keys = {
            entry["kid"]: entry
            for entry in document.get("keys", [])
            if isinstance(entry, dict)
            and isinstance(entry.get("kid"), str)
            and entry.get("use", "sig") == "sig"
            and entry.get("kty") in {"RSA", "EC", "OKP"}
        }
        self._parsed = {}

    @property
    def loaded(self) -> bool:
        return bool(self._keys)


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


Fetch = Callable[..., Awaitable[list[Any]]]


class Authenticator:
    """Turns an ``Authorization`` header into a Principal, or raises AuthenticationError."""

    def __init__(self, verifier: TokenVerifier, fetch: Fetch) -> None:
        self._verifier = verifier
        self._fetch = fetch

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthenticationError("Authentication required", credentials_present=False)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Bearer token required", credentials_present=False)
        claims = await self._verifier.verify(token.strip())
        rows = await self._fetch(queries.ACCOUNT_FOR, claims["iss"], claims["sub"])
        if not rows:
            raise AuthenticationError("Token invalid")
        row = rows[0]
        role = Role(row["role"])
        actor: UUID | None = row["patient_id"] or row["clinician_id"] or row["partner_id"]
        scope = claims.get("scope")
        return Principal(
            issuer=claims["iss"],
            subject=claims["sub"],
            role=role,
            actor_id=actor,
            expires_at=float(claims["exp"]),
            client_id=claims.get("azp") or claims.get("client_id"),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            developer=bool(row["developer"]),
        )
