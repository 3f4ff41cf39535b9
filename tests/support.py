"""Test helpers: a real uvicorn server on a loopback port, GraphQL calls over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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


def all_strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_strings(item)


def connected(url: str, work: Any) -> Any:
    """Run ``work(connection)`` on a connection to ``url``, closed afterwards."""
    import asyncpg

    async def run() -> Any:
        connection = await asyncpg.connect(url)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


def as_admin(env: Any, work: Any) -> Any:
    """Run ``work(connection)`` on a superuser connection to the test database."""
    return connected(env.admin_url, work)


def run_gateway(*args: str, env: dict | None = None, timeout: float = 120) -> Any:
    """Run the ``gateway`` command as a user would: its own process, no inherited settings."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "DATABASE_URL"
    }
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )


def production_identity(directory: Any, issuer: str) -> Any:
    """A signing key that ``gateway serve`` accepts: not the development issuer or key id."""
    import dataclasses
    import json

    from gateway.config import DEV_KEY_PREFIX
    from gateway.dev.identity import DevIdentity

    development = DevIdentity.load_or_create(directory)
    identity = dataclasses.replace(
        development, issuer=issuer, kid="prod-" + development.kid.removeprefix(DEV_KEY_PREFIX)
    )
    jwks = json.loads(development.jwks_file.read_text())
    jwks["keys"][0]["kid"] = identity.kid
    identity.jwks_file.write_text(json.dumps(jwks))
    return identity


@contextlib.contextmanager
def gateway_serve(env: Any, identity: Any = None, **variables: str) -> Iterator[tuple[Any, str]]:
    """The real ``gateway serve`` in a process of its own, production settings from the
    environment (``variables`` add to them), ready when this yields (process, base URL). Its
    request log (stdout) is dropped; its stderr is kept for the test to read. ``identity``
    (default ``env.identity``) must be one serve accepts (``production_identity``)."""
    identity = identity or env.identity
    import os
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "DATABASE_URL"
    }
    environ.update(
        {
            "DATABASE_URL": env.app_url,
            "GATEWAY_JWT_ISSUER": identity.issuer,
            "GATEWAY_JWT_AUDIENCE": identity.audience,
            "GATEWAY_JWKS_FILE": str(identity.jwks_file),
            "GATEWAY_MEDIA_SIGNING_KEYS": identity.media_keys(),
            "GATEWAY_MEDIA_ROOT": str(env.media_root),
            "GATEWAY_FREE_FORM_DOCUMENTS": "everyone",
            "GATEWAY_DB_STATEMENT_TIMEOUT_MS": "60000",
            **variables,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "gateway serve did not become ready"
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


# SQL: the event's objects hold the object whose id is $2 (grouped as {"type", "fields", "ids"},
# or, before grouping, one {"type", "id", "fields"} per object).
HOLDS_OBJECT = (
    "(data.event_objects(access_events) @> "
    "jsonb_build_array(jsonb_build_object('ids', jsonb_build_array($2::text)))"
    " or data.event_objects(access_events) @> "
    "jsonb_build_array(jsonb_build_object('id', $2::text)))"
)


def offline_production_settings(key_id: str) -> Any:
    """Production settings for a schema built without a database, identity or media store
    (compiling and running plans in process): every address points nowhere."""
    from gateway.config import Mode, load_settings

    return load_settings(
        {},
        mode=Mode.PRODUCTION,
        database_url="postgresql://unused/unused",
        jwt_issuer="unused",
        jwt_audience="unused",
        jwks_url="https://unused.invalid/jwks.json",
        media_signing_keys=f"{key_id}:{'k' * 40}",
        media_store="s3",
        media_s3_bucket="unused",
    )


class LateApp:
    """An ASGI app made once its server's address is known (a gateway whose public base URL,
    or whose sign-in provider's issuer, is its own address)."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def demo_people(env: Any) -> list[Any]:
    """Every patient of the test database, as the development sign-in page offers them."""
    from gateway.dev.oidc import Person

    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select a.subject, p.display_name from data.accounts a "
            "join data.patients p on p.id = a.patient_id where a.role = 'patient' "
            "order by a.subject"
        ),
    )
    return [Person(row["subject"], row["display_name"]) for row in rows]


@dataclasses.dataclass(frozen=True)
class SignInGateway:
    """A development gateway serving the development OpenID Connect provider at /dev/oidc."""

    url: str
    provider: Any

    @property
    def issuer(self) -> str:
        return self.provider.issuer

    @property
    def app_url(self) -> str:
        return f"{self.url}/app/"


@contextlib.contextmanager
def gateway_with_sign_in(
    env: Any,
    settings: Any,
    people: list[Any],
    redirect_uris: tuple[str, ...] = (),
    **provider_options: Any,
) -> Iterator[SignInGateway]:
    """``create_app(settings)`` with the development provider, as ``gateway dev`` serves it: the
    web app at /app/ (and any ``redirect_uris``) registered as its client."""
    from gateway.app import create_app
    from gateway.dev.oidc import PATH, DevOidcProvider
    from gateway.web.webapp import CLIENT_ID

    late = LateApp()
    server = ServerThread(late)
    provider = DevOidcProvider(
        env.identity,
        f"{server.url}{PATH}",
        {CLIENT_ID: [f"{server.url}/app/", *redirect_uris]},
        people,
        **provider_options,
    )
    late.app = create_app(settings, identity_provider=provider)
    server.start()
    try:
        yield SignInGateway(server.url, provider)
    finally:
        server.stop()


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, its S256 code_challenge)."""
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorization_answer(
    issuer: str,
    subject: str,
    redirect_uri: str,
    challenge: str,
    *,
    client_id: str = "patient-web-app",
    state: str = "s-1",
    nonce: str | None = "n-1",
    browser: httpx.Client | None = None,
) -> str:
    """What a browser does at the development provider: the authorization request with a PKCE
    ``challenge``, ``subject`` chosen on its page. The address it sends the browser back to."""
    import re

    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if nonce is not None:
        params["nonce"] = nonce
    own = browser is None
    browser = browser or httpx.Client(timeout=30)
    try:
        page = browser.get(f"{issuer}/authorize", params=params)
        assert page.status_code == 200, page.text
        request_id = re.search(r'name="request" value="([^"]+)"', page.text).group(1)
        chosen = browser.post(
            f"{issuer}/authorize", data={"request": request_id, "subject": subject}
        )
        assert chosen.status_code == 303, chosen.text
        return chosen.headers["location"]
    finally:
        if own:
            browser.close()


def oidc_sign_in(
    issuer: str, subject: str, redirect_uri: str, client_id: str = "patient-web-app"
) -> dict[str, Any]:
    """What a browser and the web app do, over HTTP: the authorization request with PKCE, the
    choice of ``subject`` on the sign-in page, the code exchanged at the token endpoint. The
    token response, with the provider's session cookie under ``"_cookies"``."""
    from urllib.parse import parse_qs, urlsplit

    verifier, challenge = pkce_pair()
    with httpx.Client(timeout=30) as browser:
        location = authorization_answer(
            issuer, subject, redirect_uri, challenge, client_id=client_id, browser=browser
        )
        answer = parse_qs(urlsplit(location).query)
        assert answer["state"] == ["s-1"] and answer["iss"] == [issuer]
        tokens = browser.post(
            f"{issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"][0],
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": verifier,
            },
        )
        assert tokens.status_code == 200, tokens.text
        return {**tokens.json(), "_cookies": dict(browser.cookies)}
