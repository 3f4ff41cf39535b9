"""The identity provider's signing keys (JWKS) by ``kid``, from a URL or a file.

From a URL they are cached, refreshed at most every ``jwks_min_refresh_seconds`` when an unknown
``kid`` arrives, and refetched after ``jwks_max_age_seconds`` so that withdrawn keys stop
verifying."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

__all__ = ["JwksCache"]


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
            assert self._url is not None  # Settings give exactly one of the URL and the file
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
