"""Test helpers: a real uvicorn server on a loopback port, GraphQL calls over real HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn


class ServerThread:
    """Serves an ASGI app with uvicorn on 127.0.0.1:<free port> in a background thread;
    ``http`` is uvicorn's HTTP implementation (``auto``: httptools when installed, as served)."""

    def __init__(self, app: Any, http: str = "auto") -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            # As `gateway serve` runs it: uvicorn's default loop (uvloop, installed with
            # uvicorn[standard]). asyncio's own loop, in a thread, answers each request of a
            # kept-alive connection 40 ms late.
            loop="auto",
            timeout_keep_alive=60,
            http=http,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self._socket])  # on the configured loop

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=20)
        self._socket.close()


@contextlib.contextmanager
def serving(app: Any, http: str = "auto") -> Iterator[ServerThread]:
    server = ServerThread(app, http).start()
    try:
        yield server
    finally:
        server.stop()


def http_client(base_url: str, **options: Any) -> httpx.Client:
    """An HTTP client that sends each request at once: with Nagle's algorithm on (the socket's
    default), a request's body waits for the server's delayed ACK of its headers, 40 ms a
    request on loopback."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(base_url=base_url, timeout=30, transport=transport, **options)


class GraphQLClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = http_client(base_url)

    def post(
        self, query: str, token: str | None, variables: dict | None = None, **headers: str
    ) -> httpx.Response:
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return self.http.post("/graphql", json=body, headers=headers)

    def execute(self, query: str, token: str, variables: dict | None = None) -> dict[str, Any]:
        response = self.post(query, token, variables)
        assert response.status_code == 200, response.text
        return response.json()
