"""GraphQL over HTTP: ``POST /graphql`` (JSON), and GraphiQL on ``GET /graphql`` in development
(the page is ``gateway.graphiql``).

Follows the GraphQL over HTTP specification: ``application/graphql-response+json`` when the client
accepts it (400 for documents that do not parse or validate), ``application/json`` otherwise (200
for every well-formed request). The caller is authenticated before any GraphQL work; a request
without a valid token gets 401 with ``WWW-Authenticate``. After execution the exit check runs; only
then is the response serialized.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from graphql import GraphQLError, GraphQLSyntaxError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from strawberry import Schema
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from gateway.audit import AccessEventWriter
from gateway.auth import Authenticator
from gateway.changes import AccessChanges
from gateway.config import Settings
from gateway.context import RequestContext
from gateway.db import Database
from gateway.documents import TrustedDocuments, document_id
from gateway.errors import (
    AuthenticationError,
    BadRequest,
    GatewayError,
    ResponseWithheld,
    ServiceUnavailable,
)
from gateway.exitcheck import ExitCheck
from gateway.explain import explanation
from gateway.graphiql import GraphiQL
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.limits import LIMIT_EXCEEDED
from gateway.loaders import Loaders
from gateway.media import PlaybackSigner
from gateway.metrics import Metrics
from gateway.observe import RequestRecord, request_record
from gateway.policy import rule_for
from gateway.ratelimit import RATE_LIMITED

if TYPE_CHECKING:
    from gateway.tracing import Tracing

__all__ = [
    "GraphQLEndpoint",
    "authenticate",
    "challenge_response",
    "format_error",
    "unavailable_response",
]

log = logging.getLogger("gateway.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_SUGGESTION = re.compile(r" Did you mean .*$", re.DOTALL)
_ALLOWED_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})
DATA_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


@dataclass(frozen=True, slots=True)
class GraphQLParams:
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    sha256: str | None = None


def format_error(error: GraphQLError, *, development: bool) -> dict[str, Any]:
    """The client's view of an error: typed errors keep their message and code; errors of the
    document keep a message without suggestions in production; everything else is masked."""
    original = error.original_error
    if isinstance(original, GatewayError):
        message, code = original.message, original.code
    elif original is None and (error.extensions or {}).get("code") == LIMIT_EXCEEDED:
        message, code = error.message, LIMIT_EXCEEDED
    elif original is None:
        message = error.message if development else _SUGGESTION.sub("", error.message)
        code = "GRAPHQL_VALIDATION_FAILED"
    else:
        message, code = "Internal server error", "INTERNAL_SERVER_ERROR"
    formatted: dict[str, Any] = {"message": message}
    if error.locations:
        formatted["locations"] = [{"line": x.line, "column": x.column} for x in error.locations]
    if error.path:
        formatted["path"] = error.path
    formatted["extensions"] = {"code": code}
    return formatted


def document_error(errors: list[GraphQLError]) -> dict[str, Any]:
    """Production's one error for a document that does not parse or validate: the same text
    for a made-up field, a real field used wrongly or ten unknown directives, so guessing names
    from differences between errors recovers nothing. Limits say which limit."""
    for error in errors:
        if (error.extensions or {}).get("code") == LIMIT_EXCEEDED:
            return {"message": error.message, "extensions": {"code": LIMIT_EXCEEDED}}
    if any(isinstance(error, GraphQLSyntaxError) for error in errors):
        return {
            "message": "Syntax error in the GraphQL document",
            "extensions": {"code": "GRAPHQL_PARSE_FAILED"},
        }
    return {
        "message": "The GraphQL document is not valid for this API",
        "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
    }


def _negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header, or None when none is acceptable."""
    if not accept:
        return JSON
    offered = []
    for part in accept.split(","):
        media, *params = (item.strip() for item in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        offered.append((media.lower(), quality))
    best: tuple[float, int, str] | None = None
    for media, quality in offered:
        if quality <= 0:
            continue
        if media == GRAPHQL_RESPONSE:
            candidate = (quality, 2, GRAPHQL_RESPONSE)
        elif media in {JSON, "application/*", "*/*"}:
            candidate = (quality, 1, JSON)
        else:
            continue
        if best is None or candidate > best:
            best = candidate
    return best[2] if best else None


def _parse_params(body: bytes, max_chars: int) -> GraphQLParams:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if isinstance(payload, list):
        raise BadRequest("Batched requests are not supported")
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


def _error_body(message: str, code: str) -> bytes:
    return orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})


async def authenticate(authenticator: Authenticator, request: Request) -> Principal | Response:
    """The request's principal, or the response refusing it (401 challenge, or 503)."""
    try:
        principal = await authenticator.authenticate(request.headers.get("authorization"))
    except AuthenticationError as exc:
        request_record(request).error_codes = (exc.code,)
        return challenge_response(exc)
    except ServiceUnavailable as exc:
        request_record(request).error_codes = (exc.code,)
        return unavailable_response(exc)
    record = request_record(request)
    record.subject, record.role = principal.subject, principal.role.value
    return principal


def challenge_response(exc: AuthenticationError) -> Response:
    """401 with an RFC 6750 challenge; ``error="invalid_token"`` only when a token was sent."""
    challenge = 'Bearer realm="consultation-gateway"'
    if exc.credentials_present:
        challenge += ', error="invalid_token"'
    return Response(
        _error_body(exc.message, exc.code),
        status_code=401,
        media_type=JSON,
        headers={**DATA_HEADERS, "www-authenticate": challenge},
    )


def unavailable_response(exc: ServiceUnavailable, media_type: str = JSON) -> Response:
    return Response(
        _error_body(exc.message, exc.code),
        status_code=503,
        media_type=media_type,
        headers={**DATA_HEADERS, "retry-after": str(exc.retry_after)},
    )


class GraphQLEndpoint:
    def __init__(
        self,
        *,
        schema: Schema,
        settings: Settings,
        authenticator: Authenticator,
        database: Database,
        exit_check: ExitCheck,
        audit: AccessEventWriter,
        playback: PlaybackSigner,
        metrics: Metrics,
        documents: TrustedDocuments,
        graphiql: GraphiQL | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._schema = schema
        self._settings = settings
        self._authenticator = authenticator
        self._database = database
        self._exit_check = exit_check
        self._audit = audit
        self._playback = playback
        self._metrics = metrics
        self._development = settings.development
        self._documents = documents
        self._graphiql = graphiql
        self._tracing = tracing
        self._in_flight = 0

    @property
    def schema(self) -> Schema:
        return self._schema

    async def handle(self, request: Request) -> Response:
        """One request; its id, log line and request metrics are ``RequestObserver``'s."""
        record = request_record(request)
        if request.method == "GET":
            return self._get(request)
        if self._in_flight >= self._settings.max_concurrent_requests:
            return self._unavailable(record, ServiceUnavailable("Server busy", retry_after=1))
        self._in_flight += 1
        try:
            async with asyncio.timeout(self._settings.request_timeout_seconds):
                return await self._post(request, record)
        except TimeoutError:
            return self._unavailable(record, ServiceUnavailable("Request timed out"))
        finally:
            self._in_flight -= 1

    def _unavailable(
        self, record: RequestRecord, exc: ServiceUnavailable, media_type: str = JSON
    ) -> Response:
        record.error_codes = (exc.code,)
        return unavailable_response(exc, media_type)

    def _refuse(
        self,
        record: RequestRecord,
        status: int,
        message: str,
        code: str,
        media_type: str,
        **headers: str,
    ) -> Response:
        record.error_codes = (code,)
        return self._reply(status, _error_body(message, code), media_type, **headers)

    async def _traced(self, name: str, attributes: dict[str, Any], work: Awaitable[Any]) -> Any:
        if self._tracing is None:
            return await work
        with self._tracing.span(name, attributes):
            return await work

    def _get(self, request: Request) -> Response:
        accepts_html = "text/html" in request.headers.get("accept", "")
        if self._graphiql is not None and accepts_html:
            return self._graphiql.page()
        return Response(
            _error_body("Send GraphQL operations with POST", "METHOD_NOT_ALLOWED"),
            status_code=405,
            media_type=JSON,
            headers={"allow": "POST", **DATA_HEADERS},
        )

    def _reply(self, status: int, body: bytes, media_type: str, **headers: str) -> Response:
        return Response(
            body, status_code=status, media_type=media_type, headers={**DATA_HEADERS, **headers}
        )

    async def _post(self, request: Request, record: RequestRecord) -> Response:
        request_id = record.request_id
        principal = await authenticate(self._authenticator, request)
        if isinstance(principal, Response):
            return principal

        media_type = _negotiate(request.headers.get("accept"))
        if media_type is None:
            return self._refuse(
                record,
                406,
                f"Acceptable media types: {GRAPHQL_RESPONSE}, {JSON}",
                "NOT_ACCEPTABLE",
                JSON,
            )
        try:
            params = await self._read_params(request)
            query = self._documents.resolve(params.query, params.sha256, principal)
        except BadRequest as exc:
            return self._refuse(record, exc.status, exc.message, exc.code, media_type)
        # A free-form operation name is the client's text and could name anything: only a
        # trusted document's name (from the manifest) is logged; otherwise just the hash.
        record.document = params.sha256 or document_id(query)
        record.operation = self._documents.names.get(record.document)

        ledger = Ledger()
        explaining = self._development and request.headers.get("x-gateway-explain") == "1"
        if explaining:
            ledger.explanations = []
        context = RequestContext(
            principal=principal,
            loaders=Loaders(self._database.fetch, principal, ledger, self._tracing),
            ledger=ledger,
            request_id=request_id,
            settings=self._settings,
            playback=self._playback,
            changes=AccessChanges(
                self._database.fetch, principal, ledger, request_id, self._settings
            ),
        )
        try:
            result = await self._traced(
                "graphql",
                {"graphql.document": record.document, "graphql.operation.name": record.operation}
                if record.operation
                else {"graphql.document": record.document},
                self._schema.execute(
                    query,
                    variable_values=params.variables,
                    context_value=context,
                    operation_name=params.operation_name,
                    allowed_operation_types=_ALLOWED_OPERATIONS,
                ),
            )
        except InvalidOperationTypeError:
            return self._refuse(
                record, 400, "Subscriptions are served over WebSocket", "BAD_REQUEST", media_type
            )
        except MissingQueryError:
            return self._refuse(record, 400, "No query", "BAD_REQUEST", media_type)

        errors = result.errors or []
        limited = next(
            (e for e in errors if (e.extensions or {}).get("code") == RATE_LIMITED), None
        )
        if limited is not None:
            return self._refuse(
                record,
                429,
                limited.message,
                RATE_LIMITED,
                media_type,
                **{"retry-after": str(limited.extensions["retryAfter"])},
            )
        for error in errors:
            original = error.original_error
            if isinstance(original, ServiceUnavailable):
                return self._unavailable(record, original, media_type)
            if original is not None and not isinstance(original, GatewayError):
                log.error(
                    "masked internal error",
                    exc_info=original,
                    extra={"request_id": request_id},
                )
        request_error = (
            result.data is None and bool(errors) and all(error.path is None for error in errors)
        )
        data = result.data
        if request_error and not self._development:
            formatted = [document_error(errors)]
        else:
            formatted = [format_error(error, development=self._development) for error in errors]
        if not request_error:
            try:
                await self._traced(
                    "exit_check",
                    {"gateway.objects": len(ledger.objects)},
                    self._exit_check.verify(principal, ledger, request_id),
                )
                events = AccessEventWriter.events_from_ledger(principal, request_id, ledger)
                await self._traced(
                    "audit_write", {"gateway.events": len(events)}, self._audit.write(events)
                )
            except ResponseWithheld as exc:
                data, formatted = None, [{"message": exc.message, "extensions": {"code": exc.code}}]
            except ServiceUnavailable as exc:
                return self._unavailable(record, exc, media_type)
        codes = [item["extensions"]["code"] for item in formatted]
        for code in codes:
            self._metrics.errors.labels(code).inc()
        record.error_codes = tuple(dict.fromkeys(codes))
        if ledger.denials:
            self._count_denials(ledger, principal)
        payload: dict[str, Any] = {} if request_error else {"data": data}
        if formatted:
            payload["errors"] = formatted
        if explaining and ledger.explanations is not None:
            payload["extensions"] = {"explain": explanation(ledger)}
        status = 400 if request_error and media_type == GRAPHQL_RESPONSE else 200
        return self._reply(status, orjson.dumps(payload), media_type)

    def _count_denials(self, ledger: Ledger, principal: Principal) -> None:
        role = principal.role
        for denial in ledger.denials:
            rule = rule_for(denial.type_name, denial.field, role)
            self._metrics.denials.labels(
                denial.type_name, denial.field, role.value, rule.name if rule else "default-deny"
            ).inc()

    async def _read_params(self, request: Request) -> GraphQLParams:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != JSON:
            raise BadRequest("Content-Type must be application/json", status=415)
        limit = self._settings.max_body_bytes
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
        return _parse_params(bytes(body), self._settings.max_query_chars)
