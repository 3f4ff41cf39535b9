"""The reference web app's files (apps/web) as ``gateway dev`` serves them at /app/: a strict
CSP, no inline script, style or handler, no third-party URL, only operations of the trusted
documents manifest; nothing of it in production."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway import create_app
from gateway.config import Mode
from gateway.web.webapp import SignIn, webapp_files
from tests.support.server import GraphQLClient, serving

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "web"
MANIFEST = ROOT / "apps" / "manifest.json"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@pytest.fixture(scope="module")
def dev_client(env):
    with serving(create_app(env.settings(mode=Mode.DEVELOPMENT))) as server:
        yield GraphQLClient(server.url)


def scripts() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(APP.glob("*.js"))}


def test_a_source_checkout_serves_the_repositorys_app_and_manifest():
    assert webapp_files() == (APP, MANIFEST)


@pytest.mark.parametrize(
    "path", ["/app/", "/app/consent?partner=P&scope=patient%2FRecording.rs&redirect_uri=x"]
)
def test_the_page_has_the_strict_csp_and_no_inline_script_style_or_handler(dev_client, path):
    """The app, and the same page as the consent page a partner links to."""
    page = dev_client.http.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.text == (APP / "index.html").read_text()
    assert re.findall(r"<script[^>]*>", page.text) == ['<script type="module" src="main.js">']
    assert "<style" not in page.text and "style=" not in page.text
    assert not re.search(r"\son[a-z]+=", page.text)
    references = set(re.findall(r'(?:src|href)="([^"#]*)"', page.text)) - {""}
    assert references == {"data:,", "app.css", "main.js"}


def test_every_file_is_served_as_it_is_in_the_repository_with_its_type(dev_client):
    for path in sorted(APP.iterdir()):
        response = dev_client.http.get(f"/app/{path.name}")
        assert response.status_code == 200, path.name
        assert response.content == path.read_bytes(), path.name
        assert response.headers["content-type"] == TYPES[path.suffix], path.name
        assert response.headers["content-security-policy"] == CSP
    manifest = dev_client.http.get("/app/manifest.json")
    assert manifest.headers["content-type"] == "application/json"
    assert manifest.json() == json.loads(MANIFEST.read_text())


def test_app_without_its_slash_redirects_and_anything_else_is_404(dev_client):
    redirect = dev_client.http.get("/app")
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/app/")
    for path in (
        "/app/missing.js",
        "/app/../pyproject.toml",
        "/app/%2e%2e%2fmanifest.json",
        "/app/..%2f..%2fpyproject.toml",
        "/app/.hidden.js",
        "/app/webapp.py",
        "/app/operations/replays.graphql",
    ):
        assert dev_client.http.get(path).status_code == 404, path


def test_production_serves_nothing_of_the_app(client):
    for path in ("/app", "/app/", "/app/main.js", "/app/manifest.json"):
        assert client.http.get(path).status_code == 404, path


def test_the_scripts_are_modules_of_this_folder_and_name_no_other_host():
    """No third-party script at run time: every import is a file of the app, and no script
    names a URL (the gateway's address comes from <meta name="gateway-url">)."""
    for name, text in scripts().items():
        for imported in re.findall(r'from "([^"]+)"', text):
            assert re.fullmatch(r"\./[a-z-]+\.js", imported), (name, imported)
            assert (APP / imported[2:]).is_file(), (name, imported)
        assert not re.search(r"https?://", text), name
        assert "innerHTML" not in text and "eval(" not in text, name


def test_the_app_sends_only_operations_of_the_manifest_and_never_a_document():
    """Operations go by hash: each name the app runs is in apps/manifest.json, and no script
    holds a GraphQL document or sends a `query` parameter."""
    names = {op["name"] for op in json.loads(MANIFEST.read_text())["operations"]}
    used = set()
    for text in scripts().values():
        used |= set(re.findall(r'\.run\("([A-Za-z]+)"', text))
        assert not re.search(r"\b(query|mutation)\s+[A-Z]\w*\s*[({]", text)
        assert "query:" not in text
    assert used == {
        "Me",
        "MyReplays",
        "Replay",
        "MyAccessLog",
        "MyConsents",
        "RevokeConsent",
        "RequestConsent",
        "AnswerConsentRequest",
    }
    assert used <= names


def test_the_page_names_its_provider_only_where_one_is_served(dev_client):
    """A gateway without a provider serves the page with empty oidc-* meta elements (the app
    then says sign-in is not set up); with one, the page names it, escaped."""
    page = dev_client.http.get("/app/").text
    assert '<meta name="oidc-issuer" content="">' in page
    written = SignIn('http://x/"><script>', "c&d").apply((APP / "index.html").read_bytes())
    assert b'<meta name="oidc-issuer" content="http://x/&quot;&gt;&lt;script&gt;">' in written
    assert b'<meta name="oidc-client-id" content="c&amp;d">' in written


def test_media_may_be_embedded_by_the_same_site_only_when_a_separate_web_app_is_listed(env):
    """A web app on its own origin (GATEWAY_CORS_ORIGINS) loads media in its <video>, a no-cors
    request that Cross-Origin-Resource-Policy: same-origin would block; so media responses say
    same-site then, and only then. Every other response keeps same-origin."""
    media = "/media/recordings/UmVjb3JkaW5nOng?exp=1&kid=dev&sig=x"
    listed = env.settings(cors_origins=("https://app.example.org",))
    for settings, expected in ((env.settings(), "same-origin"), (listed, "same-site")):
        with serving(create_app(settings)) as server:
            http = GraphQLClient(server.url).http
            refused = http.get(media)
            assert refused.status_code in (401, 403)
            assert refused.headers["cross-origin-resource-policy"] == expected
            for path in ("/graphql", "/healthz"):
                assert http.get(path).headers["cross-origin-resource-policy"] == "same-origin"
