"""``/metrics`` on a port of its own (``GATEWAY_METRICS_PORT``).

prometheus_client's WSGI app answers only GET (and OPTIONS): a HEAD gets 405, and the standard
library's server would send a body to it. So its app is wrapped: HEAD is answered as GET would be
(status, headers, ``Content-Length`` of the body a GET gets) with no body, and every ``Allow``
lists HEAD. Served by a thread of the process, as ``prometheus_client.start_http_server`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

__all__ = ["metrics_app", "serve_metrics"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_ALLOW = "OPTIONS, GET, HEAD"


def metrics_app(registry: CollectorRegistry) -> WSGIApp:
    """prometheus_client's app for ``registry``, with HEAD answered as GET without the body."""
    inner = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        head = environ["REQUEST_METHOD"] == "HEAD"
        if head:
            environ = {**environ, "REQUEST_METHOD": "GET"}
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def capture(status: str, headers: list[tuple[str, str]], *_: object) -> None:
            started.append((status, headers))

        body = b"".join(inner(environ, capture))
        status, headers = started[0]
        headers = [(name, _ALLOW if name.lower() == "allow" else value) for name, value in headers]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [] if head else [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


def serve_metrics(port: int, registry: CollectorRegistry) -> WSGIServer:
    """Serve ``registry`` on ``port`` of all interfaces from a daemon thread; the caller ends it
    with ``shutdown()`` and ``server_close()``."""
    server = make_server("0.0.0.0", port, metrics_app(registry), _Server, _QuietHandler)  # noqa: S104
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
