"""Probes: /healthz answers while the process runs; /readyz only while the database answers and
the identity provider's keys are loaded, each failure with a status naming it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import create_app
from tests.support.server import GraphQLClient, serving

ROOT = Path(__file__).resolve().parents[1]


class Forwarder:
    """A TCP relay to PostgreSQL that the test can cut, making the database unreachable."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:  # accepted as the cut happened: refuse it too
                    client.close()
                    return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        # Closing a socket does not wake a thread blocked in accept() on it, which would then
        # accept one more connection (the pool's reconnect); shutting it down first does.
        with self._lock:
            self._cut = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


@contextlib.contextmanager
def jwks_provider(status: int, keys: list) -> Iterator[dict]:
    state = {"status": status, "keys": keys}

    async def jwks(request):
        return JSONResponse({"keys": state["keys"]}, status_code=state["status"])

    with serving(Starlette(routes=[Route("/jwks.json", jwks)])) as server:
        state["url"] = f"{server.url}/jwks.json"
        yield state


def test_an_unreachable_database_makes_the_gateway_unready_but_alive(env):
    target = urlsplit(env.app_url)
    forwarder = Forwarder(target.hostname, target.port)
    settings = env.settings(
        database_url=_through(env.app_url, forwarder.port),
        db_acquire_timeout_seconds=2,
    )
    with serving(create_app(settings)) as server:
        client = GraphQLClient(server.url)
        assert client.http.get("/readyz").status_code == 200
        forwarder.cut()
        ready = client.http.get("/readyz")
        alive = client.http.get("/healthz")
    assert (ready.status_code, ready.json()) == (503, {"status": "database unavailable"})
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})


def test_an_unreadable_jwks_file_makes_the_gateway_unready(env, tmp_path):
    missing = tmp_path / "jwks.json"
    with serving(create_app(env.settings(jwks_file=missing))) as server:
        client = GraphQLClient(server.url)
        unready = client.http.get("/readyz")
        missing.write_text(env.identity.jwks_file.read_text())
        ready = client.http.get("/readyz")
    assert (unready.status_code, unready.json()) == (503, {"status": "jwks unavailable"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_a_failing_or_empty_jwks_url_makes_the_gateway_unready(env):
    import json

    keys = json.loads(env.identity.jwks_file.read_text())["keys"]
    with jwks_provider(500, keys) as provider:
        settings = env.settings(jwks_file=None, jwks_url=provider["url"])
        with serving(create_app(settings)) as server:
            client = GraphQLClient(server.url)
            failing = client.http.get("/readyz")
            provider["status"], provider["keys"] = 200, []
            empty = client.http.get("/readyz")
            provider["keys"] = keys
            ready = client.http.get("/readyz")
    assert (failing.status_code, failing.json()) == (503, {"status": "jwks unavailable"})
    assert (empty.status_code, empty.json()) == (503, {"status": "jwks unavailable"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_readiness_reports_the_listen_connection_apart_from_the_pool(env):
    """The subscriptions' LISTEN connection may go elsewhere than the pool
    (``GATEWAY_LISTEN_DATABASE_URL``: the primary, past PgBouncer). Cut only that path: the
    pool still answers, but the replica cannot serve subscriptions, and /readyz says so."""
    target = urlsplit(env.app_url)
    forwarder = Forwarder(target.hostname, target.port)
    settings = env.settings(listen_database_url=_through(env.app_url, forwarder.port))
    with serving(create_app(settings)) as server:
        client = GraphQLClient(server.url)
        ready = client.http.get("/readyz")
        forwarder.cut()
        unready = client.http.get("/readyz")
        alive = client.http.get("/healthz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert (unready.status_code, unready.json()) == (503, {"status": "listen unavailable"})
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})


def test_a_lost_listen_connection_ends_subscriptions_and_readiness_opens_a_new_one(env):
    """What a failover does to the LISTEN connection (its server goes away), done by
    terminating its backend: open subscriptions end with UNAVAILABLE, /readyz opens a new
    connection at once, and a new subscription receives events through it."""
    import asyncio

    import asyncpg

    from gateway.data.live import LISTENER
    from tests.support.subscriber import Subscriber, touch

    subscription = (
        "subscription($id: ID!) { consultationEvents(consultationId: $id) { kind "
        "consultation { id } } }"
    )
    subject, patient = env.patients()[5]
    consultation = sorted(env.truth.consultations_of_patient[patient])[0]

    async def listeners() -> list[int]:
        admin = await asyncpg.connect(env.admin_url)
        try:
            rows = await admin.fetch(
                "select pid from pg_stat_activity where application_name = $1 "
                "and datname = current_database()",
                LISTENER,
            )
            return [row["pid"] for row in rows]
        finally:
            await admin.close()

    async def terminate(pids: list[int]) -> None:
        admin = await asyncpg.connect(env.admin_url)
        try:
            await admin.execute("select pg_terminate_backend(p) from unnest($1::int[]) p", pids)
        finally:
            await admin.close()

    async def scenario(url: str) -> dict:
        subscriber = await Subscriber.connect(url, env.token(subject))
        try:
            await subscriber.subscribe("1", subscription, consultation)
            assert (await subscriber.event("1"))["kind"] == "current"
            before = await listeners()
            await terminate(before)
            interrupted = await subscriber.next("1")
            completed = await subscriber.next("1")
            async with httpx.AsyncClient(base_url=url) as http:
                ready = (await http.get("/readyz")).json()
            after = await listeners()
            await subscriber.subscribe("2", subscription, consultation)
            current = await subscriber.event("2")
            await touch(env, consultation)
            updated = await subscriber.event("2")
            return {
                "before": before,
                "after": after,
                "interrupted": interrupted,
                "completed": completed,
                "ready": ready,
                "kinds": [current["kind"], updated["kind"]],
            }
        finally:
            await subscriber.close()

    with serving(create_app(env.settings())) as server:
        seen = asyncio.run(scenario(server.url))

    # This gateway's new LISTEN connection: exactly one, none of the terminated ones.
    assert seen["before"] and len(set(seen["after"]) - set(seen["before"])) == 1
    codes = [error["extensions"]["code"] for error in seen["interrupted"]["payload"]["errors"]]
    assert (seen["interrupted"]["type"], codes) == ("next", ["UNAVAILABLE"])
    assert seen["completed"] == {"id": "1", "type": "complete"}
    assert seen["ready"] == {"status": "ready"}
    assert seen["kinds"] == ["current", "updated"]


class Silent:
    """A TCP server that accepts connections and never answers: a database host that hangs
    (a black-holed route, a frozen server), where connecting waits for its own timeout."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self._held.append(self._listener.accept()[0])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for held in self._held:
            held.close()


def _probe_timeout() -> float:
    import yaml

    deployment = yaml.safe_load((ROOT / "k8s" / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return float(container["readinessProbe"]["timeoutSeconds"])


def test_readiness_answers_before_the_probe_gives_up_when_the_database_hangs(env):
    """A LISTEN host that accepts and never answers would hold /readyz for the connect timeout
    (5 s), past the probe's timeoutSeconds, and the kubelet would see a timeout with no cause.
    /readyz answers 503 naming it within READY_BUDGET_SECONDS instead."""
    import time

    from gateway.web.health import READY_BUDGET_SECONDS

    silent = Silent()
    try:
        settings = env.settings(listen_database_url=_through(env.app_url, silent.port))
        with serving(create_app(settings)) as server:
            client = GraphQLClient(server.url)
            began = time.monotonic()
            unready = client.http.get("/readyz", timeout=10)
            took = time.monotonic() - began
    finally:
        silent.close()
    assert (unready.status_code, unready.json()) == (503, {"status": "listen unavailable"})
    assert READY_BUDGET_SECONDS <= took < _probe_timeout()
