"""``GET /media/recordings/{id}``: signed playback, bound to the viewer.

Serves a recording's media only if the URL's signature is valid and unexpired, the request's
bearer token is the subject the URL was made for, and the recording is still visible to that
caller through the same loader, row-level security and exit check as GraphQL. Every refusal is the
same 403 with an empty body; every playback is written to the audit trail before a byte is sent.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from gateway.audit import AccessEventWriter
from gateway.auth import Authenticator
from gateway.errors import (
    BadUserInput,
    ResponseWithheld,
    ServiceUnavailable,
)
from gateway.exitcheck import ExitCheck
from gateway.http import authenticate, unavailable_response
from gateway.ids import decode_global_id
from gateway.ledger import Ledger
from gateway.loaders import Fetch, Loaders
from gateway.media import PlaybackSigner
from gateway.observe import request_record
from gateway.storage import MediaStore

__all__ = ["MediaEndpoint"]

_FORBIDDEN_HEADERS = {"cache-control": "no-store"}


def _forbidden() -> Response:
    return Response(status_code=403, headers=_FORBIDDEN_HEADERS)


class MediaEndpoint:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        fetch: Fetch,
        signer: PlaybackSigner,
        exit_check: ExitCheck,
        audit: AccessEventWriter,
        store: MediaStore,
    ) -> None:
        self._authenticator = authenticator
        self._fetch = fetch
        self._signer = signer
        self._exit_check = exit_check
        self._audit = audit
        self._store = store

    async def handle(self, request: Request) -> Response:
        request_id = request_record(request).request_id
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
            await self._exit_check.verify(principal, ledger, request_id)
            await self._audit.write(
                [
                    AccessEventWriter.event(
                        principal,
                        request_id,
                        "media",
                        patient_id=row["patient_id"],
                        objects=[{"type": "Recording", "id": str(pk), "fields": ["media"]}],
                        detail={"range": request.headers.get("range")},
                    )
                ]
            )
        except ResponseWithheld:
            return _forbidden()
        except ServiceUnavailable as exc:
            request_record(request).error_codes = (exc.code,)
            return unavailable_response(exc)
        key = row["storage_key"]
        if not key.startswith(f"recordings/{row['patient_id']}/{row['id']}."):
            return _forbidden()  # the database refuses such keys; this is the second lock
        return await self._store.respond(key, row["content_type"], request)
