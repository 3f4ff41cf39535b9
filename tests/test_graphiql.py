"""GraphiQL (development mode): our own page under a strict CSP, every asset served by the gateway
itself and byte-identical to the vendored, locked npm files; nothing of it in production."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from gateway import create_app
from gateway.config import Mode
from tests.support.server import GraphQLClient, serving

LOCK = (
    Path(__file__).resolve().parents[1] / "src/gateway/web/static/graphiql/vendor/vendor.lock.json"
)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
YEAR_IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def dev_client(env):
    with serving(create_app(env.settings(mode=Mode.DEVELOPMENT))) as server:
        yield GraphQLClient(server.url)


def page_of(client: GraphQLClient):
    return client.http.get("/graphql", headers={"accept": "text/html"})


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/graphiql/[^"]+)"', html)


def test_the_page_has_exactly_the_strict_csp_and_no_inline_script_or_style(dev_client):
    """An injected inline script, a CDN script, a framing page or an exfiltrating fetch all meet
    a policy that allows only this origin's files (and data: for images and fonts)."""
    page = page_of(dev_client)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    scripts = re.findall(r"<script[^>]*>", page.text)
    assert len(scripts) == 4
    assert all(
        re.fullmatch(r'<script defer src="/graphiql/[0-9a-f]{16}/[\w.-]+\.js">', s) for s in scripts
    )
    assert "<style" not in page.text and "style=" not in page.text
    assert not re.search(r"\son[a-z]+=", page.text)  # no event-handler attributes
    every_reference = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert set(every_reference) - set(asset_urls(page.text)) == {"data:,"}  # the blank favicon


def test_the_page_loads_graphiql_react_and_our_start_up_script_in_order(dev_client):
    names = [url.rsplit("/", 1)[1] for url in asset_urls(page_of(dev_client).text)]
    assert names == [
        "graphiql.min.css",
        "graphiql-page.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphiql-init.js",
    ]


def test_served_assets_are_byte_identical_to_the_vendor_lock(dev_client):
    """What the browser runs is exactly what scripts/vendor_graphiql.py verified against the
    npm registry's integrity and recorded: a tampered or stale file fails here."""
    lock = json.loads(LOCK.read_text())
    served = {}
    for url in asset_urls(page_of(dev_client).text):
        response = dev_client.http.get(url)
        assert response.status_code == 200, url
        digest = hashlib.sha256(response.content).hexdigest()
        assert url.split("/")[2] == digest[:16]
        served[url.rsplit("/", 1)[1]] = digest
    locked = {e["file"]: e["sha256"] for e in lock["files"] if not e["file"].startswith("LICENSE")}
    assert {name: served[name] for name in locked} == locked
    assert {(e["package"], e["version"]) for e in lock["files"]} == {
        ("graphiql", "3.9.0"),
        ("react", "18.3.1"),
        ("react-dom", "18.3.1"),
    }


def test_assets_have_their_content_type_a_year_long_immutable_cache_and_nosniff(dev_client):
    for url in asset_urls(page_of(dev_client).text):
        response = dev_client.http.get(url)
        expected = "text/css" if url.endswith(".css") else "text/javascript"
        assert response.headers["content-type"] == f"{expected}; charset=utf-8"
        assert response.headers["cache-control"] == YEAR_IMMUTABLE
        assert response.headers["x-content-type-options"] == "nosniff"


def test_an_asset_under_another_digest_or_an_unknown_name_is_404(dev_client):
    """An immutable URL never serves other bytes than those it names; nothing else of the
    package (the lock, the licences, Python files) is reachable."""
    url = next(u for u in asset_urls(page_of(dev_client).text) if u.endswith("graphiql.min.js"))
    digest = url.split("/")[2]
    for path in (
        url.replace(digest, "0" * 16),
        f"/graphiql/{digest}/vendor.lock.json",
        f"/graphiql/{digest}/LICENSE.react",
        f"/graphiql/{digest}/../graphiql.py",
        "/graphiql/graphiql.min.js",
    ):
        assert dev_client.http.get(path).status_code == 404, path


def test_production_serves_neither_the_page_nor_its_assets(client, dev_client):
    """Production keeps refusing GET /graphql (405), and the asset URLs do not exist (404)."""
    urls = asset_urls(page_of(dev_client).text)
    page = page_of(client)
    assert page.status_code == 405
    assert page.headers["allow"] == "POST"
    assert "graphiql" not in page.text.lower()
    for url in urls:
        assert client.http.get(url).status_code == 404, url
