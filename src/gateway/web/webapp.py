"""The reference patient web app (``apps/web``) at ``/app/``, development mode only.

The app is static files (plain JavaScript modules, no build step, no third-party script) that
a deployment may also serve from a static site of its own; ``gateway dev`` serves them here, next
to the trusted documents manifest they send operations from by hash, under a strict
Content-Security-Policy. In the wheel the files sit in ``static/webapp/`` (``pyproject.toml``
force-includes ``apps/web`` and ``apps/manifest.json`` there); in a source checkout they are read
from the repository's ``apps/`` folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

__all__ = ["CONTENT_SECURITY_POLICY", "PATH", "WebApp", "webapp_link"]

PATH = "/app/"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)

# One folder, no subfolders: a name is a plain file name, so no path leaves the app's folder.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(html|js|css|json)$")
_MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
}
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    # Development files change under a running gateway: always the current ones.
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}
MANIFEST = "manifest.json"
# Addresses of the app that are the page itself (its script reads the path): the consent page a
# partner sends patients to, /app/consent?partner=...&scope=...&redirect_uri=...&state=...
_PAGES = frozenset({"consent"})


def webapp_link(base_url: str, token: str) -> str:
    """The app, signed in with ``token`` (the link ``gateway dev`` prints). The token is in the
    fragment: never sent to a server, and the app removes it from the address bar at once."""
    return f"{base_url}{PATH}#token={token}"


def webapp_files() -> tuple[Path, Path]:
    """(the app's folder, the trusted documents manifest its operations are in)."""
    packaged = Path(__file__).parent / "static" / "webapp"
    if packaged.is_dir():
        return packaged, packaged / MANIFEST
    apps = Path(__file__).resolve().parents[3] / "apps"
    return apps / "web", apps / MANIFEST


class WebApp:
    """``GET /app/`` (the page), ``/app/consent`` (the same page, as the consent page), and
    ``/app/<file>`` (its scripts, style and the manifest)."""

    def __init__(self, folder: Path | None = None, manifest: Path | None = None) -> None:
        found_folder, found_manifest = webapp_files()
        self._folder = folder or found_folder
        self._manifest = manifest or found_manifest

    def _path(self, name: str) -> Path | None:
        if name == MANIFEST:
            return self._manifest
        if not _NAME.match(name):
            return None
        return self._folder / name

    async def redirect(self, request: Request) -> Response:
        return RedirectResponse(PATH, status_code=308)

    async def file(self, request: Request) -> Response:
        name = request.path_params.get("name") or "index.html"
        if name in _PAGES:
            name = "index.html"
        path = self._path(name)
        if path is None or not path.is_file():
            return Response(status_code=404, headers={"cache-control": "no-store"})
        media_type = _MEDIA_TYPES[name.rsplit(".", 1)[1]]
        return Response(path.read_bytes(), media_type=media_type, headers=_HEADERS)
