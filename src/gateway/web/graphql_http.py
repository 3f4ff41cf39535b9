"""GraphQL over HTTP: ``POST /graphql``, and GraphiQL on ``GET /graphql`` in development.

The body is JSON; ``HEAD`` answers as ``GET`` (the server sends no body).

One request: admit it (concurrency cap, time budget), authenticate before any GraphQL work,
negotiate the media type, read the parameters, resolve the trusted document, execute it under a
fresh request context, then pass the whole resolved response through the disclosure step; only
then is it serialized. Follows the GraphQL over HTTP specification (see ``negotiation``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult

from gateway.authn.accounts import Authenticator
from gateway.authz.disclosure import DisclosureStep
from gateway.authz.explain import explanation
from gateway.authz.playback import PlaybackSigner
from gateway.config import Settings
from gateway.data.edge import Fetch
from gateway.errors import BadRequest, Code, GatewayError, ResponseWithheld, ServiceUnavailable
from gateway.execution.context import RequestContext
from gateway.execution.executor import Executor
from gateway.guards.trusted_documents import TrustedDocuments, document_id
from gateway.ops.metrics import Metrics
from gateway.web.admission import Admission
from gateway.web.authentication import authenticate
from gateway.web.error_format import document_error, format_error
from gateway.web.graphiql import GraphiQL
from gateway.web.negotiation import GRAPHQL_RESPONSE, JSON, negotiate
from gateway.web.observer import RequestRecord, request_record
from gateway.web.params import GraphQLParams, read_params
from gateway.web.responses import error_body, reply, unavailable_response

if TYPE_CHECKING:
    from gateway.ops.tracing import Tracing

__all__ = ["GraphQLEndpoint"]

log = logging.getLogger("gateway.http")


class GraphQLEndpoint:
    def __init__(
        self,
        *,
        executor: Executor,
        settings: Settings,
        authenticator: Authenticator,
        fetch: Fetch,
        disclosure: DisclosureStep,
        playback: PlaybackSigner,
        metrics: Metrics,
        documents: TrustedDocuments,
        graphiql: GraphiQL | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._executor = executor
        self._settings = settings
        self._authenticator = authenticator
        self._fetch = fetch
        self._disclosure = disclosure
        self._playback = playback
        self._metrics = metrics
        self._development = settings.development
        self._documents = documents
        self._graphiql = graphiql
        self._tracing = tracing
        self._admission = Admission(
            settings.max_concurrent_requests, settings.request_timeout_seconds
        )

    async def handle(self, request: Request) -> Response:
        """One request; its id, log line and request metrics are ``RequestObserver``'s."""
        record = request_record(request)
        if request.method in ("GET", "HEAD"):
            return self._get(request)
        try:
            return await self._admission.run(lambda: self._post(request, record))
        except ServiceUnavailable as exc:
            return _unavailable(record, exc, JSON)

    def _get(self, request: Request) -> Response:
        accepts_html = "text/html" in request.headers.get("accept", "")
        if self._graphiql is not None and accepts_html:
            return self._graphiql.page()
        return reply(
            405,
            error_body("Send GraphQL operations with POST", Code.METHOD_NOT_ALLOWED),
            JSON,
            allow="POST",
        )

    async def _post(self, request: Request, record: RequestRecord) -> Response:
        principal = await authenticate(self._authenticator, request)
        if isinstance(principal, Response):
            return principal
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            message = f"Acceptable media types: {GRAPHQL_RESPONSE}, {JSON}"
            return _refuse(record, 406, message, Code.NOT_ACCEPTABLE, JSON)
        try:
            params = await read_params(request, self._settings)
            query = self._documents.resolve(params.query, params.sha256, principal)
        except BadRequest as exc:
            return _refuse(record, exc.status, exc.message, exc.code, media_type)
        # A free-form operation name is the client's text and could name anything: only a
        # trusted document's name (from the manifest) is logged; otherwise just the hash.
        record.document = params.sha256 or document_id(query)
        record.operation = self._documents.names.get(record.document)

        context = RequestContext.open(
            principal,
            record.request_id,
            fetch=self._fetch,
            settings=self._settings,
            playback=self._playback,
            explaining=self._development and request.headers.get("x-gateway-explain") == "1",
            tracing=self._tracing,
        )
        attributes = {"graphql.document": record.document}
        if record.operation:
            attributes["graphql.operation.name"] = record.operation
        try:
            result, record.executor = await self._execute(
                query, record.document, params, context, attributes
            )
        except InvalidOperationTypeError:
            message = "Subscriptions are served over WebSocket"
            return _refuse(record, 400, message, Code.BAD_REQUEST, media_type)
        except MissingQueryError:
            return _refuse(record, 400, "No query", Code.BAD_REQUEST, media_type)
        except CannotGetOperationTypeError:  # no operation, or none of that name
            message = "The document has no operation" + (
                "" if params.operation_name is None else f" named {params.operation_name!r}"
            )
            return _refuse(record, 400, message, Code.BAD_REQUEST, media_type)
        return await self._respond(result, context, record, media_type)

    async def _execute(
        self,
        query: str,
        document: str,
        params: GraphQLParams,
        context: RequestContext,
        attributes: dict[str, Any],
    ) -> tuple[ExecutionResult, str]:
        work = self._executor.execute(
            query, document, params.variables, params.operation_name, context
        )
        if self._tracing is None:
            return await work
        with self._tracing.span("graphql", attributes):
            return await work

    async def _respond(
        self,
        result: ExecutionResult,
        context: RequestContext,
        record: RequestRecord,
        media_type: str,
    ) -> Response:
        errors = result.errors or []
        for error in errors:
            extensions = error.extensions or {}
            if extensions.get("code") == Code.RATE_LIMITED:
                retry = {"retry-after": str(extensions["retryAfter"])}
                return _refuse(record, 429, error.message, Code.RATE_LIMITED, media_type, **retry)
        for error in errors:
            original = error.original_error
            if isinstance(original, ServiceUnavailable):
                return _unavailable(record, original, media_type)
            if original is not None and not isinstance(original, GatewayError):
                log.error(
                    "masked internal error",
                    exc_info=original,
                    extra={"request_id": context.request_id},
                )
        request_error = (
            result.data is None and bool(errors) and all(error.path is None for error in errors)
        )
        data = result.data
        if request_error and not self._development:
            formatted = [document_error(errors)]
        else:
            formatted = [format_error(error, development=self._development) for error in errors]
        # A response whose data is null discloses nothing: no exit check, no audit event (what
        # was audited is what was sent). Siblings of the error that nulled it were cancelled
        # wherever they had got to, so their reads are neither sent nor a stable record.
        if data is not None:
            try:
                await self._disclosure.clear(context.principal, context.ledger, context.request_id)
            except ResponseWithheld as exc:
                data, formatted = None, [{"message": exc.message, "extensions": {"code": exc.code}}]
            except ServiceUnavailable as exc:
                return _unavailable(record, exc, media_type)
        codes = [item["extensions"]["code"] for item in formatted]
        for code in codes:
            self._metrics.errors.labels(code).inc()
        record.error_codes = tuple(dict.fromkeys(codes))
        payload: dict[str, Any] = {} if request_error else {"data": data}
        if formatted:
            payload["errors"] = formatted
        if context.ledger.explanations is not None:
            payload["extensions"] = {"explain": explanation(context.ledger)}
        status = 400 if request_error and media_type == GRAPHQL_RESPONSE else 200
        return reply(status, orjson.dumps(payload), media_type)


def _refuse(
    record: RequestRecord, status: int, message: str, code: str, media_type: str, **headers: str
) -> Response:
    record.error_codes = (code,)
    return reply(status, error_body(message, code), media_type, **headers)


def _unavailable(record: RequestRecord, exc: ServiceUnavailable, media_type: str) -> Response:
    record.error_codes = (exc.code,)
    return unavailable_response(exc, media_type)
