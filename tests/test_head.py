"""HEAD answers as GET would on every GET route: the same status and the same headers, and not
one byte of body on the wire. Checked over raw sockets against real servers, under both of
uvicorn's HTTP implementations, in production and in development, on the metrics port and
through ``gateway serve``."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import pytest

from gateway import create_app
from gateway.config import Mode
from tests.support.gateway_process import gateway_serve
from tests.support.production import production_identity
from tests.support.server import GraphQLClient, serving

# Headers that differ from one request to the next whatever the method.
PER_REQUEST = frozenset({"date", "x-request-id"})
PLAY = "query($id: ID!) { recording(id: $id) { playbackUrl } }"
HTML = {"accept": "text/html"}
JSON = {"accept": "application/json"}


@dataclass(frozen=True)
class Exchange:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def comparable(self) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in self.headers if k not in PER_REQUEST)


def exchange(
    base: str, method: str, target: str, headers: dict[str, str] | None = None
) -> Exchange:
    """One request on its own connection, read to the server's close: what the wire carried,
    so a body sent after a HEAD's headers would show."""
    parts = urlsplit(base)
    lines = [f"{method} {target} HTTP/1.1", f"host: {parts.netloc}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [line.split(":", 1) for line in header_lines]
    return Exchange(
        int(status_line.split()[1]), [(k.strip().lower(), v.strip()) for k, v in pairs], body
    )


def assert_head_mirrors_get(
    base: str, target: str, headers: dict[str, str] | None = None, *, changing: bool = False
) -> Exchange:
    """HEAD and GET give the same status and headers, and HEAD no body. ``changing``: the body
    changes between calls (metrics), so only the header names and the content type must match."""
    get = exchange(base, "GET", target, headers)
    head = exchange(base, "HEAD", target, headers)
    assert head.status == get.status, target
    assert head.body == b"", target
    if changing:
        assert [k for k, _ in head.comparable()] == [k for k, _ in get.comparable()]
        assert head.header("content-type") == get.header("content-type")
    else:
        assert head.comparable() == get.comparable(), target
    if get.header("content-length") is not None and not changing:
        assert int(get.header("content-length")) == len(get.body)
    return head


def signed_path(base: str, viewer: dict) -> str:
    body = GraphQLClient(base).execute(PLAY, viewer["token"], {"id": viewer["global_id"]})
    parts = urlsplit(body["data"]["recording"]["playbackUrl"])
    return f"{parts.path}?{parts.query}"


@pytest.fixture(scope="module", params=["httptools", "h11"])
def production(env, request):
    with serving(create_app(env.settings()), http=request.param) as server:
        yield server.url


@pytest.fixture(scope="module", params=["httptools", "h11"])
def development(env, request):
    with serving(create_app(env.settings(mode=Mode.DEVELOPMENT)), http=request.param) as server:
        yield server.url


def test_head_graphql_asking_for_html_in_development_gets_the_graphiql_page_like_get(
    development,
):
    head = assert_head_mirrors_get(development, "/graphql", HTML)
    assert head.status == 200
    assert head.header("content-type") == "text/html; charset=utf-8"
    assert int(head.header("content-length")) > 0
    assert (head.header("content-security-policy") or "").startswith("default-src 'none'")


def test_head_graphql_in_production_is_refused_exactly_as_get_is(production):
    for accept in (HTML, JSON, {}):
        head = assert_head_mirrors_get(production, "/graphql", accept)
        assert head.status == 405
        assert head.header("allow") == "POST"
        assert head.header("content-type") == "application/json"


def test_head_graphql_without_html_in_development_is_the_same_405_as_get(development):
    head = assert_head_mirrors_get(development, "/graphql", JSON)
    assert (head.status, head.header("allow")) == (405, "POST")


def test_head_on_graphiql_assets_mirrors_get_found_or_not(development):
    page = exchange(development, "GET", "/graphql", HTML).body.decode()
    assets = re.findall(r'(?:src|href)="(/graphiql/[^"]+)"', page)
    assert assets
    for asset in assets:
        head = assert_head_mirrors_get(development, asset)
        assert head.status == 200
        assert head.header("cache-control") == "public, max-age=31536000, immutable"
    digest, name = assets[0].split("/")[2:]
    assert assert_head_mirrors_get(development, f"/graphiql/{'0' * 16}/{name}").status == 404
    assert assert_head_mirrors_get(development, f"/graphiql/{digest}/absent.js").status == 404


def test_head_on_probes_and_metrics_mirrors_get(production):
    assert assert_head_mirrors_get(production, "/healthz").status == 200
    assert assert_head_mirrors_get(production, "/readyz").status == 200
    head = assert_head_mirrors_get(production, "/metrics", changing=True)
    assert head.status == 200
    assert head.header("content-type").startswith("text/plain; version=")
    for route in ("/healthz", "/readyz", "/metrics"):
        refused = exchange(production, "PUT", route)
        assert refused.status == 405
        assert set(refused.header("allow").split(", ")) == {"GET", "HEAD"}


def test_head_on_routes_absent_in_production_is_the_same_404(production):
    assert assert_head_mirrors_get(production, "/graphiql/0123456789abcdef/x.js").status == 404
    assert assert_head_mirrors_get(production, "/nowhere").status == 404


def test_head_on_a_signed_recording_mirrors_get_and_its_refusals_are_the_same(
    env, production, viewer
):
    path = signed_path(production, viewer)
    mine = {"authorization": f"Bearer {viewer['token']}"}
    played = assert_head_mirrors_get(production, path, mine)
    assert played.status == 200
    assert played.header("accept-ranges") == "bytes"
    ranged = assert_head_mirrors_get(production, path, {**mine, "range": "bytes=0-9"})
    assert (ranged.status, ranged.header("content-length")) == (206, "10")

    other = {"authorization": f"Bearer {env.token(env.patients()[1][0])}"}
    refused = assert_head_mirrors_get(production, path, other)
    assert (refused.status, refused.header("cache-control")) == (403, "no-store")
    tampered = path.replace("sig=", "sig=A")
    assert assert_head_mirrors_get(production, tampered, mine).status == 403
    unauthenticated = assert_head_mirrors_get(production, path)  # neither token nor cookie
    assert (unauthenticated.status, unauthenticated.header("cache-control")) == (403, "no-store")


def test_a_head_on_a_recording_is_audited_as_a_playback_like_a_get(env, production, viewer):
    """HEAD goes through the same disclosure step: what exists, its type and size are told."""
    path = signed_path(production, viewer)
    request_id = f"head-{uuid.uuid4().hex}"
    mine = {"authorization": f"Bearer {viewer['token']}", "x-request-id": request_id}
    assert exchange(production, "HEAD", path, mine).status == 200

    async def events():
        connection = await asyncpg.connect(env.admin_url)
        try:
            return await connection.fetch(
                "select kind, detail::text from data.access_events where request_id = $1",
                request_id,
            )
        finally:
            await connection.close()

    assert [(row["kind"], row["detail"]) for row in asyncio.run(events())] == [
        ("media", '{"range": null}')
    ]


def test_head_on_metrics_of_their_own_port_mirrors_get_and_is_allowed(env):
    with serving(create_app(env.settings(metrics_port=0))) as server:
        port = server.server.config.app.state.metrics_server.server_port
        metrics = f"http://127.0.0.1:{port}"
        head = assert_head_mirrors_get(metrics, "/metrics", changing=True)
        assert head.status == 200
        assert int(head.header("content-length")) > 0
        gzipped = assert_head_mirrors_get(
            metrics, "/metrics", {"accept-encoding": "gzip"}, changing=True
        )
        assert gzipped.header("content-encoding") == "gzip"
        refused = exchange(metrics, "POST", "/metrics")
        assert (refused.status, refused.header("allow")) == (405, "OPTIONS, GET, HEAD")
        assert assert_head_mirrors_get(server.url, "/metrics").status == 404


def test_gateway_serve_answers_head_as_get_on_its_port_and_its_metrics_port(env, tmp_path):
    identity = production_identity(tmp_path, "https://idp.head.test")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    with gateway_serve(env, identity, GATEWAY_METRICS_PORT=str(metrics_port)) as (_, url):
        assert assert_head_mirrors_get(url, "/graphql", HTML).status == 405
        assert assert_head_mirrors_get(url, "/healthz").status == 200
        assert assert_head_mirrors_get(url, "/readyz").status == 200
        assert assert_head_mirrors_get(url, "/metrics").status == 404
        metrics = f"http://127.0.0.1:{metrics_port}"
        assert assert_head_mirrors_get(metrics, "/metrics", changing=True).status == 200
