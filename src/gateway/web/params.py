"""A GraphQL request's parameters, read from a ``POST /graphql`` body.

JSON only, one operation, the body and query bounded, a trusted document named by
``extensions.persistedQuery.sha256Hash``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from gateway.config import Settings
from gateway.errors import BadRequest
from gateway.web.negotiation import JSON

__all__ = ["GraphQLParams", "params_of", "parse_params", "read_params"]

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class GraphQLParams:
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    sha256: str | None = None


async def read_params(request: Request, settings: Settings) -> GraphQLParams:
    """The parameters of ``request``; BadRequest (415, 413 or 400) when it has none usable."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != JSON:
        raise BadRequest("Content-Type must be application/json", status=415)
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest("Request body too large", status=413)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise BadRequest("Request body too large", status=413)
    except ClientDisconnect:
        raise BadRequest("Client disconnected") from None
    return parse_params(bytes(body), settings.max_query_chars)


def parse_params(body: bytes, max_chars: int) -> GraphQLParams:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if isinstance(payload, list):
        raise BadRequest("Batched requests are not supported")
    return params_of(payload, max_chars)


def params_of(payload: object, max_chars: int) -> GraphQLParams:
    """The parameters of one request's JSON object (an HTTP body, a WebSocket ``subscribe``
    payload); BadRequest when it has none usable."""
    if not isinstance(payload, dict):
        raise BadRequest("Request body must be a JSON object")
    sha256 = _persisted_hash(payload.get("extensions"))
    query = payload.get("query")
    if query is None and sha256 is not None:
        pass
    elif not isinstance(query, str) or not query.strip():
        raise BadRequest("The 'query' parameter must be a non-empty string")
    elif len(query) > max_chars:
        raise BadRequest(f"The query is longer than {max_chars} characters")
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("The 'variables' parameter must be an object")
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequest("The 'operationName' parameter must be a string")
    return GraphQLParams(query, variables, operation_name, sha256)


def _persisted_hash(extensions: object) -> str | None:
    if extensions is None:
        return None
    if not isinstance(extensions, dict):
        raise BadRequest("The 'extensions' parameter must be an object")
    persisted = extensions.get("persistedQuery")
    if persisted is None:
        return None
    digest = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise BadRequest("persistedQuery.sha256Hash must be 64 hexadecimal digits")
    return digest.lower()
