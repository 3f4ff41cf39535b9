"""OpenTelemetry tracing, off unless an OTLP endpoint is configured.

When ``Settings.traces_endpoint`` is None, :meth:`Tracing.from_settings` returns None, nothing of
OpenTelemetry is imported, and every call site pays one ``is None`` check. When set, spans go
through a ``BatchSpanProcessor`` to an OTLP/HTTP exporter, flushed when the app shuts down.

Spans, per request and per batch, never per field: ``{METHOD} {route}`` (server), ``graphql``
(execution), ``loader {name}`` (one DataLoader batch), one span per SQL statement named after its
constant in ``queries.py``, ``exit_check`` and ``audit_write``. Attributes hold names, counts,
statuses, the request id and document hashes: never an argument, an object id, a query text or a
field value. An exception marks its span as an error with the exception's type only (its message
could quote a row). The gateway faces the apps, so a client's ``traceparent`` is not trusted:
each request starts a trace of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gateway.config import Settings
from gateway.errors import ConfigurationError

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context

__all__ = ["Tracing", "traced"]


class Tracing:
    def __init__(self, provider: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._provider = provider
        self._tracer = provider.get_tracer("gateway")
        self._context = context
        self._trace = trace
        self._server = SpanKind.SERVER
        self._client = SpanKind.CLIENT
        self._internal = SpanKind.INTERNAL
        self._error = Status(StatusCode.ERROR)

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing | None:
        endpoint = settings.traces_endpoint
        if endpoint is None:
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise ConfigurationError(
                "OTEL_EXPORTER_OTLP_ENDPOINT: tracing needs the 'tracing' extra "
                "(pip install 'consultation-gateway[tracing]')"
            ) from None
        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.otel_service_name})
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        return cls(provider)

    def shutdown(self) -> None:
        """Export what is buffered and stop."""
        self._provider.shutdown()

    @contextlib.contextmanager
    def span(
        self, name: str, attributes: Mapping[str, Any], *, client: bool = False
    ) -> Iterator[Any]:
        with self._tracer.start_as_current_span(
            name,
            kind=self._client if client else self._internal,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_status(self._error)
                span.set_attribute("error.type", type(exc).__qualname__)
                raise

    def statement(self, name: str) -> contextlib.AbstractContextManager[Any]:
        """A span for one SQL statement, named after its constant (never its text or values)."""
        return self.span(name, {"db.system": "postgresql", "db.operation.name": name}, client=True)

    def start_server_span(
        self, scope: Mapping[str, Any], request_id: str
    ) -> tuple[Any, Token[Context]]:
        method = scope["method"]
        span = self._tracer.start_span(
            method,
            kind=self._server,
            attributes={"http.request.method": method, "gateway.request_id": request_id},
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    def end_server_span(self, handle: tuple[Any, Token[Context]], route: str, status: int) -> None:
        span, token = handle
        self._context.detach(token)
        span.update_name(f"{span.name} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self._error)
        span.end()


_OFF = contextlib.nullcontext()


def traced(
    tracing: Tracing | None, name: str, attributes: Mapping[str, Any]
) -> contextlib.AbstractContextManager[Any]:
    """A span named ``name`` around a step when tracing is on, else nothing."""
    return _OFF if tracing is None else tracing.span(name, attributes)
