"""Per-request observation: the request id, one log line, the request metrics and the server span.

``RequestObserver`` wraps every HTTP route. It takes the request id from ``X-Request-Id`` (when it
is a short token of safe characters) or makes one, echoes it on the response, and when the
response is done writes one ``gateway.request`` log line and counts the request. Endpoints add
what only they know (who called, which document, which error codes) to the ``RequestRecord`` in
the scope. Nothing here reads a body, a query or a header other than the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.ops.metrics import Metrics

if TYPE_CHECKING:
    from gateway.ops.tracing import Tracing

__all__ = ["RequestObserver", "RequestRecord", "request_record"]

log = logging.getLogger("gateway.request")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SCOPE_KEY = "gateway.request"
# Probes and scrapes are logged at debug level: they are frequent and say nothing new.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(slots=True)
class RequestRecord:
    """What the request log line says beyond method, route, status and duration."""

    request_id: str
    subject: str | None = None
    role: str | None = None
    operation: str | None = None  # a trusted document's name, from the manifest
    document: str | None = None  # SHA-256 of the executed document
    executor: str | None = None  # what executed it: plan or graphql-core
    error_codes: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "subject": self.subject,
            "role": self.role,
            "operation": self.operation,
            "document": self.document,
            "executor": self.executor,
            "error_codes": list(self.error_codes),
        }


def request_record(request: Request) -> RequestRecord:
    """The record ``RequestObserver`` put in the request's scope (a fresh one outside it)."""
    record = request.scope.get(_SCOPE_KEY)
    if record is None:
        record = RequestRecord(_request_id(request.headers.get("x-request-id")))
        request.scope[_SCOPE_KEY] = record
    return record


def _request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a safe token, else a new one."""
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def _route(scope: Scope) -> str:
    """The matched route's template (``/media/recordings/{id}``), never the raw path."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Metrics, tracing: Tracing | None) -> None:
        self.app = app
        self._metrics = metrics
        self._tracing = tracing
        # Label children by (route, status): labels() costs microseconds, a dict lookup does not.
        self._counted: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope["headers"]
        given = next((v.decode("latin-1") for n, v in headers if n == b"x-request-id"), None)
        record = RequestRecord(_request_id(given))
        scope[_SCOPE_KEY] = record
        status = 500
        echoed = (b"x-request-id", record.request_id.encode())

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                kept = [(n, v) for n, v in message.get("headers", []) if n != b"x-request-id"]
                message["headers"] = [*kept, echoed]
            await send(message)

        tracing = self._tracing
        span = None
        if tracing is not None:
            span = tracing.start_server_span(scope, record.request_id)
        try:
            await self.app(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope)
            if tracing is not None and span is not None:
                tracing.end_server_span(span, route, status)
            counted = self._counted.get((route, status))
            if counted is None:
                counted = self._counted[(route, status)] = (
                    self._metrics.requests.labels(route, str(status)),
                    self._metrics.latency.labels(route),
                )
            counted[0].inc()
            counted[1].observe(elapsed)
            level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "request",
                    extra={
                        **record.fields(),
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
