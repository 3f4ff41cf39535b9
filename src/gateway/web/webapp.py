"""The reference patient web app (``apps/web``) at ``/app/``, development mode only.

The app is static files (plain JavaScript modules, no build step, no third-party script) that
a deployment may also serve from a static site of its own; ``gateway dev`` serves them here, next
to the trusted documents manifest they send operations from by hash, under a strict
Content-Security-Policy. In the wheel the files sit in ``static/webapp/`` (``pyproject.toml``
force-includes ``apps/web`` and ``apps/manifest.json`` there); in a source checkout they are read
from the repository's ``apps/`` folder.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "CLIENT_ID",
    "CONTENT_SECURITY_POLICY",
    "PATH",
    "IdentityProvider",
    "SignIn",
    "WebApp",
    "webapp_files",
]

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


# The app's client id at the development provider (``gateway dev``'s /dev/oidc).
CLIENT_ID = "patient-web-app"


class IdentityProvider(Protocol):
    """An OpenID Connect provider served by the gateway itself (development only), at the path
    of its issuer URL."""

    issuer: str

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


@dataclass(frozen=True)
class SignIn:
    """The provider the app signs in with: written into index.html's ``oidc-*`` meta elements,
    as a deployment writes them into its copy."""

    issuer: str
    client_id: str = CLIENT_ID

    def apply(self, page: bytes) -> bytes:
        text = page.decode()
        for name, value in (("oidc-issuer", self.issuer), ("oidc-client-id", self.client_id)):
            empty = f'<meta name="{name}" content="">'
            if empty not in text:
                raise ValueError(f"index.html has no empty {name} meta element")
            text = text.replace(empty, f'<meta name="{name}" content="{html.escape(value)}">')
        return text.encode()


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

    def __init__(
        self,
        folder: Path | None = None,
        manifest: Path | None = None,
        sign_in: SignIn | None = None,
    ) -> None:
        found_folder, found_manifest = webapp_files()
        self._folder = folder or found_folder
        self._manifest = manifest or found_manifest
        self._sign_in = sign_in

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
        content = path.read_bytes()
        if name == "index.html" and self._sign_in is not None:
            content = self._sign_in.apply(content)
        return Response(content, media_type=media_type, headers=_HEADERS)
