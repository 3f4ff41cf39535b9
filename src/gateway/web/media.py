"""``GET /media/recordings/{id}``: signed playback, bound to the viewer.

Serves a recording's media only if the URL's signature is valid and unexpired, the request's
bearer token is the subject the URL was made for, the recording is still visible to that caller
through the same loader and row-level security as GraphQL, the policy still grants the caller the
recording's ``playbackUrl``, and the disclosure step clears the playback (exit check, audit event
written before a byte is sent). Every refusal is the same 403 with an empty body.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from starlette.requests import Request
from starlette.responses import Response

from gateway.authn.accounts import Authenticator
from gateway.authz import field_check
from gateway.authz.disclosure import DisclosureStep
from gateway.authz.playback import COOKIE, PlaybackSession, PlaybackSessions, PlaybackSigner
from gateway.data.edge import Fetch
from gateway.data.loaders import Loaders
from gateway.errors import AuthenticationError, BadUserInput, ResponseWithheld, ServiceUnavailable
from gateway.identity import Principal
from gateway.ids import decode_global_id
from gateway.ledger import Ledger
from gateway.web.authentication import authenticate
from gateway.web.media_store import MediaStore
from gateway.web.observer import request_record
from gateway.web.responses import challenge_response, unavailable_response

__all__ = ["MediaEndpoint"]

_FORBIDDEN_HEADERS = {"cache-control": "no-store"}


def _forbidden() -> Response:
    return Response(status_code=403, headers=_FORBIDDEN_HEADERS)


_ONE_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def _capped(request: Request, most: int) -> Request:
    """``request`` with a single open or long Range cut to ``most`` bytes: a browser's
    ``bytes=0-`` would otherwise be one response streaming the whole file, checked once, so lost
    access would not stop it. A player asks again for the rest; that request is checked again."""
    match = _ONE_RANGE.fullmatch(request.headers.get("range", "").strip())
    if match is None:
        return request
    first = int(match.group(1))
    last = first + most - 1
    if match.group(2) and int(match.group(2)) <= last:
        return request
    # In the scope itself: the response reads the Range header from the scope it is sent with.
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"range"]
    headers.append((b"range", f"bytes={first}-{last}".encode()))
    request.scope["headers"] = headers
    return request


@dataclass(frozen=True, slots=True)
class _Playback:
    """What the policy decision needs of the recording being played."""

    pk: UUID
    owner: UUID
    consent_scopes: tuple[str, ...] | None
    granted: str | None


class MediaEndpoint:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        fetch: Fetch,
        signer: PlaybackSigner,
        sessions: PlaybackSessions,
        disclosure: DisclosureStep,
        store: MediaStore,
        range_max_bytes: int,
    ) -> None:
        self._range_max = range_max_bytes
        self._authenticator = authenticator
        self._fetch = fetch
        self._signer = signer
        self._sessions = sessions
        self._disclosure = disclosure
        self._store = store

    async def handle(self, request: Request) -> Response:
        """``POST``: start a browser playback (bearer token → cookie); ``GET``/``HEAD`` with the
        bearer token: native players, each request audited; without it: a browser playback's
        requests, by its cookie."""
        if request.method == "POST":
            return await self._start(request)
        if "authorization" not in request.headers:
            return await self._continue(request)
        return await self._play(request)

    async def _bearer(self, request: Request) -> tuple[Principal, UUID] | Response:
        """The token's principal and the recording of a URL signed for it, or the refusal."""
        principal = await authenticate(self._authenticator, request)
        if isinstance(principal, Response):
            return principal
        pk = self._signed(request, principal.issuer, principal.subject)
        return _forbidden() if pk is None else (principal, pk)

    async def _play(self, request: Request) -> Response:
        viewer = await self._bearer(request)
        if isinstance(viewer, Response):
            return viewer
        principal, pk = viewer
        detail = {"range": request.headers.get("range")}
        row = await self._disclose(request, principal, pk, detail=detail)
        if isinstance(row, Response):
            return row
        return await self._send(row, request)

    async def _start(self, request: Request) -> Response:
        """The one audited event of a browser playback, and the cookie its requests carry."""
        viewer = await self._bearer(request)
        if isinstance(viewer, Response):
            return viewer
        principal, pk = viewer
        if principal.expires_at <= time.time():
            # Within the clock leeway the token still authenticates, but a playback started now
            # could never be served: its cookie would expire with the token. Refused as an
            # expired sign-in, before anything is audited, so the app asks to sign in again.
            exc = AuthenticationError("Token expired")
            request_record(request).error_codes = (exc.code,)
            return challenge_response(exc)
        playback = uuid4().hex
        detail = {"playback": playback, "via": "cookie"}
        row = await self._disclose(request, principal, pk, detail=detail)
        if isinstance(row, Response):
            return row
        session = PlaybackSession(
            playback=playback,
            recording=pk,
            issuer=principal.issuer,
            subject=principal.subject,
            scopes=tuple(sorted(principal.scopes)),
            client_id=principal.client_id,
            expires=min(int(request.query_params["exp"]), int(principal.expires_at)),
        )
        response = Response(status_code=204, headers=_FORBIDDEN_HEADERS)
        response.set_cookie(
            COOKIE,
            self._sessions.mint(session),
            max_age=max(session.expires - int(time.time()), 1),
            path=request.url.path,
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    async def _continue(self, request: Request) -> Response:
        """A request of a started browser playback: its cookie, still valid, for this
        recording, its URL still signed for the cookie's viewer, the viewer's account and
        access as they are now; exit-checked, not audited again."""
        record = request_record(request)
        cookie = request.cookies.get(COOKIE)
        try:
            type_name, pk = decode_global_id(request.path_params["id"])
        except (BadUserInput, KeyError, ValueError):
            return _forbidden()
        session = None if cookie is None else self._sessions.verify(cookie, pk)
        if type_name != "Recording" or session is None:
            return _forbidden()
        if self._signed(request, session.issuer, session.subject) != pk:
            return _forbidden()
        try:
            principal = await self._authenticator.account(
                issuer=session.issuer,
                subject=session.subject,
                expires_at=float(session.expires),
                client_id=session.client_id,
                scopes=frozenset(session.scopes),
            )
        except AuthenticationError:
            return _forbidden()
        except ServiceUnavailable as exc:
            record.error_codes = (exc.code,)
            return unavailable_response(exc)
        record.subject, record.role = principal.subject, principal.role.value
        row = await self._disclose(request, principal, pk, continuing=session.playback)
        if isinstance(row, Response):
            return row
        return await self._send(row, _capped(request, self._range_max))

    def _signed(self, request: Request, issuer: str, subject: str) -> UUID | None:
        """The recording of a URL signed, unexpired, for (issuer, subject); else None."""
        try:
            type_name, pk = decode_global_id(request.path_params["id"])
            expires = int(request.query_params["exp"])
            kid = request.query_params["kid"]
            signature = request.query_params["sig"]
        except (BadUserInput, KeyError, ValueError):
            return None
        if type_name != "Recording" or not self._signer.verify(
            pk, issuer, subject, expires, kid, signature, now=time.time()
        ):
            return None
        return pk

    async def _disclose(
        self,
        request: Request,
        principal: Principal,
        pk: UUID,
        *,
        detail: dict[str, Any] | None = None,
        continuing: str | None = None,
    ) -> Any:
        """The recording's row if ``principal`` may play it now (the loader with RLS, the
        policy, the disclosure step), else the refusal to send."""
        record = request_record(request)
        ledger = Ledger()
        loaders = Loaders(self._fetch, principal, ledger)
        try:
            row = await loaders.recording.load(pk)
            if row is None or not _key_owned(row):
                return _forbidden()
            playback = _Playback(
                row["id"], row["patient_id"], row["consent_scopes"], row.get("granted")
            )
            # The gate's decision on the recording's playbackUrl, recorded as a read of its media.
            [reason] = field_check.decide(principal, playback, "Recording", ("playbackUrl",))
            if not ledger.record_field("Recording", row["id"], row["patient_id"], "media", reason):
                return _forbidden()
            if continuing is None:
                await self._disclosure.clear(
                    principal, ledger, record.request_id, kind="media", detail=detail
                )
            else:
                await self._disclosure.continue_playback(
                    principal, ledger, record.request_id, continuing
                )
        except ResponseWithheld:
            return _forbidden()
        except ServiceUnavailable as exc:
            record.error_codes = (exc.code,)
            return unavailable_response(exc)
        return row

    async def _send(self, row: Any, request: Request) -> Response:
        return await self._store.respond(row["storage_key"], row["content_type"], request)


def _key_owned(row: Any) -> bool:
    """The row's media key names its patient and itself. The database refuses any other key
    (``recordings_storage_key_owned``); this is the second lock, checked before anything is
    disclosed or audited, so that a row pointing at another recording's media plays nothing."""
    key: str = row["storage_key"]
    return key.startswith(f"recordings/{row['patient_id']}/{row['id']}.")
