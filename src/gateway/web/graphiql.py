"""GraphiQL for developers (development mode only), served entirely by the gateway.

A hospital network may block public CDNs, and a health app should not run a CDN's script next to
a patient's token. So the page is ours, with no inline script or style, under a strict
Content-Security-Policy; GraphiQL and React are vendored in ``static/graphiql/vendor/`` (pinned
npm tarballs, verified and listed in ``vendor.lock.json`` by ``scripts/vendor_graphiql.py``), and
every asset is served at ``/graphiql/<sha256 prefix>/<name>`` with a year-long immutable cache: a
changed file gets a new URL. ``create_app`` adds the asset route only in development mode.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass
from importlib.resources import files
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = ["ASSET_ROUTE", "CONTENT_SECURITY_POLICY", "Asset", "GraphiQL", "graphiql_link"]

ASSET_ROUTE = "/graphiql/{digest}/{name}"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)

_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_ASSET_HEADERS = {
    "cache-control": "public, max-age=31536000, immutable",
    "x-content-type-options": "nosniff",
}
_PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}
# Load order matters: React, then ReactDOM, then GraphiQL's UMD build, then our start-up script.
_VENDORED = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js")
_STYLES = ("vendor/graphiql.min.css", "graphiql-page.css")
_SCRIPTS = (*(f"vendor/{name}" for name in _VENDORED), "graphiql-init.js")


def graphiql_link(base_url: str, token: str) -> str:
    """The page with the headers editor filled with ``Authorization: Bearer <token>`` (the link
    ``gateway dev`` prints)."""
    headers = quote(json.dumps({"Authorization": f"Bearer {token}"}))
    return f"{base_url}/graphql?headers={headers}"


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    body: bytes
    media_type: str
    sha256: str

    @property
    def url(self) -> str:
        return f"/graphiql/{self.sha256[:16]}/{self.name}"


def _load(relative: str) -> Asset:
    body = files("gateway.web").joinpath("static", "graphiql", *relative.split("/")).read_bytes()
    name = relative.rsplit("/", 1)[-1]
    suffix = name[name.rfind(".") :]
    return Asset(name, body, _MEDIA_TYPES[suffix], hashlib.sha256(body).hexdigest())


class GraphiQL:
    """The page (``GET /graphql`` with ``Accept: text/html``) and its assets."""

    def __init__(self) -> None:
        styles = [_load(path) for path in _STYLES]
        scripts = [_load(path) for path in _SCRIPTS]
        self.assets = {asset.name: asset for asset in (*styles, *scripts)}
        self._page = _PAGE.format(
            styles="\n".join(
                f'<link rel="stylesheet" href="{html.escape(a.url)}">' for a in styles
            ),
            scripts="\n".join(
                f'<script defer src="{html.escape(a.url)}"></script>' for a in scripts
            ),
        )

    def page(self) -> Response:
        return HTMLResponse(self._page, headers=_PAGE_HEADERS)

    async def asset(self, request: Request) -> Response:
        asset = self.assets.get(request.path_params["name"])
        if asset is None or request.path_params["digest"] != asset.sha256[:16]:
            return Response(status_code=404, headers={"cache-control": "no-store"})
        return Response(asset.body, media_type=asset.media_type, headers=_ASSET_HEADERS)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GraphiQL - consultation gateway (development)</title>
<link rel="icon" href="data:,">
{styles}
{scripts}
</head>
<body>
<header class="gateway-bar">
<strong>Consultation gateway</strong>
<span class="gateway-mode">development</span>
<label for="gateway-token">Token</label>
<input id="gateway-token" type="password" autocomplete="off" spellcheck="false"
 placeholder="a JWT; sent as Authorization: Bearer ... to this gateway only">
<button id="gateway-token-clear" type="button">Clear</button>
<span id="gateway-token-state" role="status"></span>
</header>
<div id="graphiql">Loading GraphiQL...</div>
</body>
</html>
"""
