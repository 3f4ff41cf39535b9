"""Who is calling, for an HTTP route: the principal, or the response that refuses the request.

The ``Authenticator`` answers "who is this?"; this turns its failures into HTTP (401 with a
challenge, or 503) and records who called on the request's log record. A rejected caller never
reaches a request context.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.authn.accounts import Authenticator
from gateway.errors import AuthenticationError, ServiceUnavailable
from gateway.identity import Principal
from gateway.web.observer import request_record
from gateway.web.responses import challenge_response, unavailable_response

__all__ = ["authenticate"]


async def authenticate(authenticator: Authenticator, request: Request) -> Principal | Response:
    """The request's principal, or the response refusing it (401 challenge, or 503)."""
    record = request_record(request)
    try:
        principal = await authenticator.authenticate(request.headers.get("authorization"))
    except AuthenticationError as exc:
        record.error_codes = (exc.code,)
        return challenge_response(exc)
    except ServiceUnavailable as exc:
        record.error_codes = (exc.code,)
        return unavailable_response(exc)
    record.subject, record.role = principal.subject, principal.role.value
    return principal
