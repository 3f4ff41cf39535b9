"""``GET /media/recordings/{id}``: signed playback, bound to the viewer.

Serves a recording's media only if the URL's signature is valid and unexpired, the request's
bearer token is the subject the URL was made for, the recording is still visible to that caller
through the same loader and row-level security as GraphQL, the policy still grants the caller the
recording's ``playbackUrl``, and the disclosure step clears the playback (exit check, audit event
written before a byte is sent). Every refusal is the same 403 with an empty body.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from gateway.authn.accounts import Authenticator
from gateway.authz.disclosure import DisclosureStep
from gateway.authz.field_check import decide
from gateway.authz.playback import PlaybackSigner
from gateway.data.loaders import Fetch, Loaders
from gateway.errors import BadUserInput, ResponseWithheld, ServiceUnavailable
from gateway.ids import decode_global_id
from gateway.ledger import Ledger
from gateway.web.authentication import authenticate
from gateway.web.media_store import MediaStore
from gateway.web.observer import request_record
from gateway.web.responses import unavailable_response

__all__ = ["MediaEndpoint"]

_FORBIDDEN_HEADERS = {"cache-control": "no-store"}


def _forbidden() -> Response:
    return Response(status_code=403, headers=_FORBIDDEN_HEADERS)


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
        disclosure: DisclosureStep,
        store: MediaStore,
    ) -> None:
        self._authenticator = authenticator
        self._fetch = fetch
        self._signer = signer
        self._disclosure = disclosure
        self._store = store

    async def handle(self, request: Request) -> Response:
        record = request_record(request)
        principal = await authenticate(self._authenticator, request)
        if isinstance(principal, Response):
            return principal
        try:
            type_name, pk = decode_global_id(request.path_params["id"])
            expires = int(request.query_params["exp"])
            kid = request.query_params["kid"]
            signature = request.query_params["sig"]
        except (BadUserInput, KeyError, ValueError):
            return _forbidden()
        if type_name != "Recording" or not self._signer.verify(
            pk, principal.issuer, principal.subject, expires, kid, signature, now=time.time()
        ):
            return _forbidden()

        ledger = Ledger()
        loaders = Loaders(self._fetch, principal, ledger)
        try:
            row = await loaders.recording.load(pk)
            if row is None:
                return _forbidden()
            playback = _Playback(
                row["id"], row["patient_id"], row["consent_scopes"], row.get("granted")
            )
            if decide(principal, playback, "Recording", "playbackUrl") is not None:
                return _forbidden()
            ledger.record_read("Recording", row["id"], row["patient_id"], "media")
            await self._disclosure.clear(
                principal,
                ledger,
                record.request_id,
                kind="media",
                detail={"range": request.headers.get("range")},
            )
        except ResponseWithheld:
            return _forbidden()
        except ServiceUnavailable as exc:
            record.error_codes = (exc.code,)
            return unavailable_response(exc)
        key = row["storage_key"]
        if not key.startswith(f"recordings/{row['patient_id']}/{row['id']}."):
            return _forbidden()  # the database refuses such keys; this is the second lock
        return await self._store.respond(key, row["content_type"], request)
