"""Signed, short-lived playback URLs bound to the viewer, and the playback cookies of browsers.

A URL names a recording, an expiry and a key id, and carries an HMAC-SHA256 over (recording,
viewer issuer and subject, expiry) under that key. Several keys verify (rotation); the first signs.

A browser's ``<video>`` cannot send the bearer token, so a browser exchanges a URL once, with the
token, for a cookie naming that one audited playback (docs/MEDIA_AND_AUDIT.md); the cookie is
MACed under the same keys, its MAC domain-separated from a URL's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote
from uuid import UUID

import orjson

__all__ = ["COOKIE", "PlaybackSession", "PlaybackSessions", "PlaybackSigner"]


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


COOKIE = "gateway_playback"
"""The cookie of a browser playback (``POST`` then ``GET`` of a signed URL); its path is the one
recording's path, so it reaches nothing else (never ``/graphql``)."""


@dataclass(frozen=True, slots=True)
class PlaybackSession:
    """What a playback cookie carries: one audited playback of one recording by one viewer,
    until ``expires`` (the earlier of the signed URL's expiry and the viewer's token's)."""

    playback: str
    recording: UUID
    issuer: str
    subject: str
    scopes: tuple[str, ...]
    client_id: str | None
    expires: int


def _cookie_mac(secret: bytes, payload: bytes) -> str:
    digest = hmac.digest(secret, b"playback-session\n" + payload, hashlib.sha256)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PlaybackSessions:
    """Mints and verifies playback cookies under the media signing keys (the first signs, all
    verify). A cookie's MAC is domain-separated from a URL's, so neither passes for the other."""

    def __init__(
        self, keys: tuple[tuple[str, bytes], ...], clock: Callable[[], float] = time.time
    ) -> None:
        self._keys = dict(keys)
        self._signing_kid = keys[0][0]
        self._clock = clock

    def mint(self, session: PlaybackSession) -> str:
        payload = orjson.dumps(
            {
                "p": session.playback,
                "r": str(session.recording),
                "i": session.issuer,
                "s": session.subject,
                "c": list(session.scopes),
                "a": session.client_id,
                "x": session.expires,
                "k": self._signing_kid,
            }
        )
        mac = _cookie_mac(self._keys[self._signing_kid], payload)
        return f"{_b64(payload)}.{mac}"

    def verify(self, value: str, recording: UUID) -> PlaybackSession | None:
        """The session a cookie carries, if it is genuine, unexpired and for ``recording``."""
        encoded, _, mac = value.partition(".")
        try:
            payload = _unb64(encoded)
            claims = orjson.loads(payload)
            secret = self._keys.get(claims["k"])
            if secret is None or not hmac.compare_digest(
                _cookie_mac(secret, payload).encode(), mac.encode("utf-8", "replace")
            ):
                return None
            session = PlaybackSession(
                playback=str(claims["p"]),
                recording=UUID(claims["r"]),
                issuer=str(claims["i"]),
                subject=str(claims["s"]),
                scopes=tuple(str(scope) for scope in claims["c"]),
                client_id=None if claims["a"] is None else str(claims["a"]),
                expires=int(claims["x"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
            return None
        if session.recording != recording or session.expires < self._clock():
            return None
        return session
