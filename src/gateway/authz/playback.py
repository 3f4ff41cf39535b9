"""Signed, short-lived playback URLs bound to the viewer.

A URL names a recording, an expiry and a key id, and carries an HMAC-SHA256 over (recording,
viewer issuer and subject, expiry) under that key. Several keys verify (rotation); the first signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import quote
from uuid import UUID

__all__ = ["PlaybackSigner"]


class PlaybackSigner:
    def __init__(
        self,
        keys: tuple[tuple[str, bytes], ...],
        ttl_seconds: int,
        base_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("at least one media signing key is required")
        self._keys = dict(keys)
        self._signing_kid = keys[0][0]
        self._kid_quoted = quote(self._signing_kid, safe="")
        self._ttl = ttl_seconds
        self._base_url = base_url.rstrip("/")
        self._clock = clock

    @staticmethod
    def _mac(secret: bytes, recording: UUID, issuer: str, subject: str, expires: int) -> str:
        message = f"{recording}\n{issuer}\n{subject}\n{expires}".encode()
        digest = hmac.digest(secret, message, hashlib.sha256)
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def url(
        self, recording: UUID, path_id: str, issuer: str, subject: str, now: float | None = None
    ) -> str:
        expires = int((self._clock() if now is None else now) + self._ttl)
        signature = self._mac(self._keys[self._signing_kid], recording, issuer, subject, expires)
        # Every part is URL-safe already (digits, the key id, base64url), so no urlencode.
        return (
            f"{self._base_url}/media/recordings/{path_id}"
            f"?exp={expires}&kid={self._kid_quoted}&sig={signature}"
        )

    def verify(
        self,
        recording: UUID,
        issuer: str,
        subject: str,
        expires: int,
        kid: str,
        signature: str,
        now: float | None = None,
    ) -> bool:
        secret = self._keys.get(kid)
        if secret is None or expires < (self._clock() if now is None else now):
            return False
        expected = self._mac(secret, recording, issuer, subject, expires)
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
