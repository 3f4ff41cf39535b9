"""Signing in at the development OpenID Connect provider: a gateway that serves it, and what a
browser and the web app do there, over HTTP."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx

from tests.support.database import as_admin
from tests.support.server import ServerThread


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
