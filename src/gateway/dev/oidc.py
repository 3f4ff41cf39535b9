"""The development OpenID Connect provider, where a demo patient signs in by choosing a name.

The web app signs in against it as it would against the operator's provider.

Authorization code with PKCE (S256 only) for public clients registered with their exact
redirect URIs, refresh tokens that rotate on every use, RP-initiated sign-out that ends the
provider's session and every refresh token of it. Access tokens are the development identity's
(``DevIdentity.token``: its issuer, the gateway's audience); ID tokens carry this provider's
issuer URL and the client as audience. Everything is in memory: a restart signs everyone out.
``gateway dev`` mounts it at ``/dev/oidc``; ``gateway serve`` never does (it refuses the
development identity's keys and issuer)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.dev.identity import DevIdentity

__all__ = ["PATH", "DevOidcProvider", "Person"]

PATH = "/dev/oidc"
SESSION_COOKIE = "dev_oidc_session"
# The sign-in page's request, bound to the browser that asked for it (SameSite=Strict): a page
# of another site cannot post a choice into someone else's browser (login CSRF).
REQUEST_COOKIE = "dev_oidc_request"
_CODE_SECONDS = 60
_REQUEST_SECONDS = 600
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256, unpadded
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 section 4.1
_STATE = re.compile(r"^[\x21-\x7e]{1,512}$")
_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;"
    "color:#1a1a1a}button{font:inherit;display:block;width:100%;margin:.4rem 0;padding:.6rem;"
    "text-align:left;border:1px solid #555;border-radius:6px;background:#fff;cursor:pointer}"
    "button:focus{outline:3px solid #1a56b8;outline-offset:2px}.note{color:#444}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


@dataclass(frozen=True)
class Person:
    """An account one may sign in as: its token subject and the name shown to choose it."""

    subject: str
    name: str


@dataclass
class _Pending:
    client_id: str
    redirect_uri: str
    state: str
    nonce: str | None
    challenge: str
    scope: str
    until: float


@dataclass
class _Session:
    subject: str
    since: int
    refresh_tokens: set[str] = field(default_factory=set)


@dataclass
class _Code:
    pending: _Pending
    session_id: str
    until: float


@dataclass
class _Refresh:
    client_id: str
    session_id: str
    scope: str


class DevOidcProvider:
    """An ASGI app serving the provider at ``issuer`` (a URL whose path it is mounted at).

    ``clients`` maps each client id to its redirect URIs (exact matches; the same URIs are the
    allowed post-sign-out addresses). ``access_ttl`` is the access token's lifetime in seconds;
    ``refresh`` False issues no refresh tokens (the client must sign in again at expiry)."""

    def __init__(
        self,
        identity: DevIdentity,
        issuer: str,
        clients: Mapping[str, Sequence[str]],
        people: Sequence[Person],
        *,
        access_ttl: int = 900,
        session_ttl: int = 8 * 3600,
        refresh: bool = True,
    ) -> None:
        self.identity = identity
        self.issuer = issuer.rstrip("/")
        self.clients = {client: tuple(uris) for client, uris in clients.items()}
        self.people = {person.subject: person for person in people}
        self.access_ttl = access_ttl
        self.session_ttl = session_ttl
        self.refresh = refresh
        self._path = urlsplit(self.issuer).path or "/"
        self._origins = {_origin(uri) for uris in self.clients.values() for uri in uris}
        self._pending: dict[str, _Pending] = {}
        self._sessions: dict[str, _Session] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Refresh] = {}
        # Used codes and refresh tokens, by the sign-in they came from: one presented again
        # (stolen, replayed) ends every refresh token of that sign-in.
        self._spent: dict[str, tuple[str, float]] = {}
        self._app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery, methods=["GET"]),
                Route("/jwks", self.jwks, methods=["GET"]),
                Route("/authorize", self.authorize, methods=["GET"]),
                Route("/authorize", self.choose, methods=["POST"]),
                Route("/token", self.token, methods=["POST", "OPTIONS"]),
                Route("/end-session", self.end_session, methods=["GET", "POST"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def offer(self, person: Person) -> None:
        """One more account on the sign-in page (an account made after the provider started)."""
        self.people[person.subject] = person

    # Discovery --------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return self._cors(
            request,
            JSONResponse(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "end_session_endpoint": f"{self.issuer}/end-session",
                    "jwks_uri": f"{self.issuer}/jwks",
                    "response_types_supported": ["code"],
                    "response_modes_supported": ["query"],
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["none"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                    "scopes_supported": ["openid", "profile", "offline_access"],
                    "authorization_response_iss_parameter_supported": True,
                }
            ),
        )

    async def jwks(self, request: Request) -> Response:
        return self._cors(
            request,
            Response(self.identity.jwks_file.read_bytes(), media_type="application/json"),
        )

    # Authorization ----------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        self._expire()
        query = request.query_params
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        # Until the client and its address are known, an error is shown here: it is never sent
        # to an address nobody registered (RFC 6749 section 4.1.2.1).
        if client_id not in self.clients:
            return _page("Sign-in refused", "Unknown client_id.", status=400)
        if redirect_uri not in self.clients[client_id]:
            return _page("Sign-in refused", "redirect_uri is not registered.", status=400)
        state = query.get("state", "")
        problem = None
        if query.get("response_type") != "code":
            problem = ("unsupported_response_type", "response_type must be code")
        elif not _STATE.match(state):
            problem = ("invalid_request", "state is required (1-512 visible characters)")
        elif query.get("code_challenge_method") != "S256" or not _CHALLENGE.match(
            query.get("code_challenge", "")
        ):
            problem = ("invalid_request", "PKCE: code_challenge with code_challenge_method=S256")
        elif "openid" not in query.get("scope", "").split():
            problem = ("invalid_scope", "scope must include openid")
        if problem is not None:
            return self._back(
                redirect_uri, {"error": problem[0], "error_description": problem[1]}, state
            )
        pending = _Pending(
            client_id,
            redirect_uri,
            state,
            query.get("nonce") or None,
            query["code_challenge"],
            query["scope"],
            time.time() + _REQUEST_SECONDS,
        )
        prompt = set(query.get("prompt", "").split())
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = self._sessions.get(session_id)
        if session is not None and not prompt & {"login", "select_account"}:
            return self._issue_code(pending, session_id)
        if "none" in prompt:
            return self._back(redirect_uri, {"error": "login_required"}, state)
        request_id = secrets.token_urlsafe(24)
        self._pending[request_id] = pending
        response = self._chooser(request_id, pending)
        response.set_cookie(
            REQUEST_COOKIE,
            request_id,
            max_age=_REQUEST_SECONDS,
            path=self._path,
            httponly=True,
            samesite="strict",
        )
        return response

    async def choose(self, request: Request) -> Response:
        self._expire()
        form = await _form(request)
        request_id = form.get("request", "")
        if not secrets.compare_digest(request.cookies.get(REQUEST_COOKIE, ""), request_id):
            return _page("Sign-in refused", "This sign-in was not started in this browser.", 400)
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return _page("Sign-in expired", "This sign-in page has expired: start again.", 400)
        person = self.people.get(form.get("subject", ""))
        if person is None:
            return _page("Sign-in refused", "No such account.", status=400)
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = _Session(person.subject, int(time.time()))
        response = self._issue_code(pending, session_id)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=self.session_ttl,
            path=self._path,
            httponly=True,
            samesite="lax",
        )
        response.delete_cookie(REQUEST_COOKIE, path=self._path, httponly=True, samesite="strict")
        return response

    def _issue_code(self, pending: _Pending, session_id: str) -> Response:
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Code(pending, session_id, time.time() + _CODE_SECONDS)
        return self._back(pending.redirect_uri, {"code": code}, pending.state)

    def _back(self, redirect_uri: str, params: dict[str, str], state: str) -> Response:
        query = {**params, "iss": self.issuer}
        if state:
            query["state"] = state
        return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", 303, headers=_NO_STORE)

    def _chooser(self, request_id: str, pending: _Pending) -> Response:
        buttons = "".join(
            f'<button type="submit" name="subject" value="{html.escape(p.subject)}">'
            f'{html.escape(p.name)} <span class="note">({html.escape(p.subject)})</span></button>'
            for p in self.people.values()
        )
        body = (
            f'<form method="post" action="{html.escape(self._path)}/authorize">'
            f'<input type="hidden" name="request" value="{request_id}">'
            f"<fieldset><legend>Sign in as</legend>{buttons}</fieldset></form>"
            '<p class="note">Development sign-in: anyone who reaches this page may choose any '
            "account. In production the app signs in with the operator's provider.</p>"
        )
        # A form's redirect is held to form-action too: the client's address is allowed.
        return _page(
            "Sign in (development)",
            body,
            form_action=f"'self' {_origin(pending.redirect_uri)}",
            raw=True,
        )

    # Tokens -----------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._cors(request, Response(status_code=204))
        self._expire()
        form = await _form(request)
        grant = form.get("grant_type")
        client_id = form.get("client_id", "")
        if client_id not in self.clients:
            return self._error(request, "invalid_client", "unknown client_id", 401)
        if grant == "authorization_code":
            return self._from_code(request, form, client_id)
        if grant == "refresh_token":
            return self._from_refresh(request, form, client_id)
        return self._error(request, "unsupported_grant_type", "authorization_code or refresh_token")

    def _from_code(self, request: Request, form: dict[str, str], client_id: str) -> Response:
        code = form.get("code", "")
        found = self._codes.get(code)
        if found is None or found.pending.client_id != client_id:
            self._replayed(code)
            return self._error(request, "invalid_grant", "unknown, used or expired code")
        del self._codes[code]  # used once, even when refused below
        self._spent[code] = (found.session_id, time.time() + _REQUEST_SECONDS)
        if form.get("redirect_uri", "") != found.pending.redirect_uri:
            return self._error(request, "invalid_grant", "redirect_uri differs")
        verifier = form.get("code_verifier", "")
        if not _VERIFIER.match(verifier) or not secrets.compare_digest(
            _s256(verifier), found.pending.challenge
        ):
            return self._error(request, "invalid_grant", "code_verifier does not match")
        session = self._sessions.get(found.session_id)
        if session is None:
            return self._error(request, "invalid_grant", "the sign-in has ended")
        return self._tokens(request, session, found.session_id, found.pending, client_id)

    def _from_refresh(self, request: Request, form: dict[str, str], client_id: str) -> Response:
        token = form.get("refresh_token", "")
        found = self._refresh.get(token)
        session = self._sessions.get(found.session_id) if found else None
        if found is None or session is None or found.client_id != client_id:
            self._replayed(token)
            return self._error(request, "invalid_grant", "unknown, used or ended refresh token")
        del self._refresh[token]  # rotated: each refresh token is used once
        self._spent[token] = (found.session_id, time.time() + self.session_ttl)
        session.refresh_tokens.discard(token)
        pending = _Pending(client_id, "", "", None, "", found.scope, 0)
        return self._tokens(request, session, found.session_id, pending, client_id)

    def _tokens(
        self,
        request: Request,
        session: _Session,
        session_id: str,
        pending: _Pending,
        client_id: str,
    ) -> Response:
        now = int(time.time())
        person = self.people[session.subject]
        claims = {
            "iss": self.issuer,
            "aud": client_id,
            "sub": session.subject,
            "iat": now,
            "exp": now + self.access_ttl,
            "auth_time": session.since,
            "name": person.name,
        }
        if pending.nonce:
            claims["nonce"] = pending.nonce
        body: dict[str, Any] = {
            "access_token": self.identity.token(session.subject, ttl=self.access_ttl),
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "scope": pending.scope,
            "id_token": jwt.encode(
                claims,
                self.identity.private_key,
                algorithm="ES256",
                headers={"kid": self.identity.kid},
            ),
        }
        if self.refresh:
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = _Refresh(client_id, session_id, pending.scope)
            session.refresh_tokens.add(refresh)
            body["refresh_token"] = refresh
        return self._cors(request, JSONResponse(body, headers=_NO_STORE))

    def _error(self, request: Request, error: str, description: str, status: int = 400) -> Response:
        return self._cors(
            request,
            JSONResponse(
                {"error": error, "error_description": description},
                status_code=status,
                headers=_NO_STORE,
            ),
        )

    def _cors(self, request: Request, response: Response) -> Response:
        """A client on another origin reads the discovery document and its tokens."""
        origin = request.headers.get("origin")
        if origin in self._origins:
            response.headers["access-control-allow-origin"] = origin
            response.headers["vary"] = "origin"
            if request.method == "OPTIONS":
                response.headers["access-control-allow-methods"] = "GET, POST"
                response.headers["access-control-allow-headers"] = "content-type"
        return response

    def _replayed(self, spent: str) -> None:
        """A used code or refresh token presented again: its sign-in's refresh tokens end (the
        one who replays it, or the one it was stolen from, signs in again)."""
        session_id, _ = self._spent.get(spent, ("", 0.0))
        session = self._sessions.get(session_id)
        if session is not None:
            for token in session.refresh_tokens:
                self._refresh.pop(token, None)
            session.refresh_tokens.clear()

    # Sign-out ---------------------------------------------------------------------------

    async def end_session(self, request: Request) -> Response:
        """Ends the provider's session and every refresh token of it, then back to the client's
        registered address. Asked by another site (a navigation it started), the page asks
        first: a page of another site cannot sign anyone out."""
        fields = await _form(request) if request.method == "POST" else dict(request.query_params)
        client_id = fields.get("client_id", "")
        target = fields.get("post_logout_redirect_uri", "")
        if client_id not in self.clients:
            return _page("Sign-out refused", "Unknown client_id.", status=400)
        if target and target not in self.clients[client_id]:
            return _page("Sign-out refused", "post_logout_redirect_uri is not registered.", 400)
        if request.method == "GET" and request.headers.get("sec-fetch-site") == "cross-site":
            return self._confirm_sign_out(client_id, target)
        session = self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        if session is not None:
            for token in session.refresh_tokens:
                self._refresh.pop(token, None)
        if target:
            response: Response = RedirectResponse(target, 303, headers=_NO_STORE)
        else:
            response = _page("Signed out", "You are signed out.")
        response.delete_cookie(SESSION_COOKIE, path=self._path, httponly=True, samesite="lax")
        return response

    def _confirm_sign_out(self, client_id: str, target: str) -> Response:
        body = (
            f'<form method="post" action="{html.escape(self._path)}/end-session">'
            f'<input type="hidden" name="client_id" value="{html.escape(client_id)}">'
            '<input type="hidden" name="post_logout_redirect_uri" '
            f'value="{html.escape(target)}">'
            "<p>Sign out of the development sign-in?</p>"
            '<button type="submit">Sign out</button></form>'
        )
        form_action = f"'self' {_origin(target)}" if target else "'self'"
        return _page("Sign out", body, form_action=form_action, raw=True)

    def _expire(self) -> None:
        now = time.time()
        for table in (self._pending, self._codes):
            for key in [k for k, v in table.items() if v.until < now]:
                del table[key]
        for key in [k for k, (_, until) in self._spent.items() if until < now]:
            del self._spent[key]
        ended = [k for k, s in self._sessions.items() if s.since + self.session_ttl < now]
        for key in ended:
            for token in self._sessions.pop(key).refresh_tokens:
                self._refresh.pop(token, None)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what browsers and OAuth clients send), at
    most 16 KiB; a name given twice keeps its first value."""
    body = await request.body()
    if len(body) > 16384:
        return {}
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(name, value)
    return fields


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _page(
    title: str,
    body: str,
    status: int = 200,
    *,
    form_action: str = "'none'",
    raw: bool = False,
) -> HTMLResponse:
    content = body if raw else f"<p>{html.escape(body)}</p>"
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{content}</main></body></html>"
    )
    policy = (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    headers = {**_NO_STORE, "content-security-policy": policy}
    return HTMLResponse(text, status_code=status, headers=headers)
