"""The gateway's own HTTP responses, outside GraphQL execution.

An error body, the 401 challenge, 503 with Retry-After, and the headers every data-bearing
response carries."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from gateway.errors import AuthenticationError, ServiceUnavailable
from gateway.web.negotiation import JSON

__all__ = [
    "DATA_HEADERS",
    "challenge_response",
    "error_body",
    "reply",
    "unavailable_response",
]

DATA_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


def error_body(message: str, code: str) -> bytes:
    """``{"errors": [{"message", "extensions": {"code"}}]}`` as bytes."""
    return orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})


def reply(status: int, body: bytes, media_type: str, **headers: str) -> Response:
    return Response(
        body, status_code=status, media_type=media_type, headers={**DATA_HEADERS, **headers}
    )


def challenge_response(exc: AuthenticationError) -> Response:
    """401 with an RFC 6750 challenge; ``error="invalid_token"`` only when a token was sent."""
    challenge = 'Bearer realm="consultation-gateway"'
    if exc.credentials_present:
        challenge += ', error="invalid_token"'
    return reply(401, error_body(exc.message, exc.code), JSON, **{"www-authenticate": challenge})


def unavailable_response(exc: ServiceUnavailable, media_type: str = JSON) -> Response:
    return reply(
        503, error_body(exc.message, exc.code), media_type, **{"retry-after": str(exc.retry_after)}
    )
