"""The development OpenID Connect provider (``gateway dev``'s /dev/oidc) over real HTTP: the
authorization code flow with PKCE that the web app runs, each refusal a client meets, refresh
tokens that rotate, and a sign-out that ends them. Its access tokens are the gateway's: a
patient signed in here reads their own record and nothing else."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from gateway import create_app
from gateway.config import Mode
from gateway.dev.oidc import DevOidcProvider, Person
from gateway.errors import ConfigurationError
from gateway.web.webapp import CLIENT_ID
from tests.support.server import GraphQLClient
from tests.support.sign_in import (
    authorization_answer,
    demo_people,
    gateway_with_sign_in,
    oidc_sign_in,
    pkce_pair,
)


@pytest.fixture(scope="module")
def people(env):
    return demo_people(env)


@pytest.fixture(scope="module")
def signed(env, people):
    with gateway_with_sign_in(env, env.settings(mode=Mode.DEVELOPMENT), people) as gateway:
        yield gateway


def authorize_params(redirect_uri: str, **overrides: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v != ""}


def test_discovery_names_the_endpoints_and_pkce_s256_only(signed):
    metadata = httpx.get(f"{signed.issuer}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == signed.issuer == f"{signed.url}/dev/oidc"
    assert metadata["authorization_endpoint"] == f"{signed.issuer}/authorize"
    assert metadata["token_endpoint"] == f"{signed.issuer}/token"
    assert metadata["end_session_endpoint"] == f"{signed.issuer}/end-session"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["none"]


def test_a_patient_chosen_by_name_signs_in_and_the_gateway_accepts_the_access_token(
    env, signed, people
):
    """The sign-in page lists the patients by name; the chosen one's access token reads their
    own record at the gateway; the ID token names the provider, the client and the nonce."""
    chooser = httpx.get(f"{signed.issuer}/authorize", params=authorize_params(signed.app_url))
    assert chooser.status_code == 200
    assert all(person.name in chooser.text for person in people[:3])
    assert "form-action 'self' " + signed.url in chooser.headers["content-security-policy"]
    subject = env.patients()[0][0]
    tokens = oidc_sign_in(signed.issuer, subject, signed.app_url)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    me = GraphQLClient(signed.url).execute("{ me { subject } }", tokens["access_token"])
    assert me == {"data": {"me": {"subject": subject}}}
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["sub"], claims["nonce"]) == (
        signed.issuer,
        CLIENT_ID,
        subject,
        "n-1",
    )
    assert claims["name"] == next(p.name for p in people if p.subject == subject)
    # The ID token is no access token: the gateway refuses it (another issuer and audience).
    refused = httpx.post(
        f"{signed.url}/graphql",
        json={"query": "{ me { subject } }"},
        headers={"authorization": f"Bearer {tokens['id_token']}"},
    )
    assert refused.status_code == 401


def test_an_unregistered_redirect_uri_or_client_is_refused_on_the_page_never_redirected(signed):
    for params, message in (
        (authorize_params("https://attacker.example/cb"), "redirect_uri is not registered."),
        (authorize_params(signed.app_url, client_id="other"), "Unknown client_id."),
    ):
        answer = httpx.get(f"{signed.issuer}/authorize", params=params)
        assert (answer.status_code, "location" in answer.headers) == (400, False)
        assert message in answer.text


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        ({"code_challenge": ""}, "invalid_request", "PKCE"),
        ({"code_challenge_method": "plain"}, "invalid_request", "PKCE"),
        ({"response_type": "token"}, "unsupported_response_type", "code"),
        ({"scope": "profile"}, "invalid_scope", "openid"),
    ],
)
def test_a_request_without_pkce_s256_or_openid_goes_back_with_the_oauth_error(
    signed, overrides, error, description
):
    answer = httpx.get(
        f"{signed.issuer}/authorize", params=authorize_params(signed.app_url, **overrides)
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(signed.app_url + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == [error] and description in query["error_description"][0]
    assert query["state"] == ["st"] and "code" not in query


def _code(signed, subject: str) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    location = authorization_answer(signed.issuer, subject, signed.app_url, challenge)
    return parse_qs(urlsplit(location).query)["code"][0], verifier


def _exchange(signed, code: str, verifier: str, redirect_uri: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{signed.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or signed.app_url,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
    )


def test_a_code_needs_its_verifier_and_its_redirect_uri_and_is_used_once(env, signed):
    """The attack: a code seen in transit (a log, a Referer) exchanged without the verifier, or
    exchanged a second time. Each is refused, and a refused code is spent."""
    subject = env.patients()[1][0]
    code, verifier = _code(signed, subject)
    wrong = _exchange(signed, code, pkce_pair()[0])
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert wrong.json()["error_description"] == "code_verifier does not match"
    again = _exchange(signed, code, verifier)
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "unknown, used or expired code",
    }
    code, verifier = _code(signed, subject)
    other_uri = _exchange(signed, code, verifier, "http://127.0.0.1:1/app/")
    assert other_uri.json()["error_description"] == "redirect_uri differs"
    code, verifier = _code(signed, subject)
    assert _exchange(signed, code, verifier).status_code == 200
    assert _exchange(signed, code, verifier).json()["error"] == "invalid_grant"


def _refresh(signed, token: str) -> httpx.Response:
    return httpx.post(
        f"{signed.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT_ID},
    )


def test_refresh_tokens_rotate_and_a_replayed_one_ends_them_all(env, signed):
    """The attack: a refresh token copied from the tab, replayed after the app renewed with it.
    Refused, and the sign-in's current refresh token ends with it (reuse detection): the thief
    gets nothing, and the app signs in again."""
    subject = env.patients()[2][0]
    tokens = oidc_sign_in(signed.issuer, subject, signed.app_url)
    renewed = _refresh(signed, tokens["refresh_token"])
    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != tokens["refresh_token"]
    me = GraphQLClient(signed.url).execute("{ me { subject } }", renewed.json()["access_token"])
    assert me["data"]["me"]["subject"] == subject
    assert _refresh(signed, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert _refresh(signed, renewed.json()["refresh_token"]).json() == {
        "error": "invalid_grant",
        "error_description": "unknown, used or ended refresh token",
    }
    # Another client presenting a good token does not spend it.
    again = oidc_sign_in(signed.issuer, subject, signed.app_url)
    other = httpx.post(
        f"{signed.issuer}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": again["refresh_token"],
            "client_id": "other",
        },
    )
    assert other.json()["error"] == "invalid_client"
    assert _refresh(signed, again["refresh_token"]).status_code == 200


def test_a_replayed_code_ends_the_refresh_tokens_it_gave(env, signed):
    subject = env.patients()[2][0]
    code, verifier = _code(signed, subject)
    first = _exchange(signed, code, verifier)
    assert first.status_code == 200
    assert _exchange(signed, code, verifier).json()["error"] == "invalid_grant"
    assert _refresh(signed, first.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_sign_out_ends_the_session_and_its_refresh_tokens(env, signed):
    subject = env.patients()[2][0]
    tokens = oidc_sign_in(signed.issuer, subject, signed.app_url)
    cookies = tokens["_cookies"]
    # With the provider's session, a new authorization needs no choice (a new tab signs in).
    silent = httpx.get(
        f"{signed.issuer}/authorize", params=authorize_params(signed.app_url), cookies=cookies
    )
    assert silent.status_code == 303 and "code=" in silent.headers["location"]
    ended = httpx.get(
        f"{signed.issuer}/end-session",
        params={"post_logout_redirect_uri": signed.app_url, "client_id": CLIENT_ID},
        cookies=cookies,
    )
    assert (ended.status_code, ended.headers["location"]) == (303, signed.app_url)
    assert 'dev_oidc_session=""' in ended.headers["set-cookie"]
    assert _refresh(signed, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    after = httpx.get(
        f"{signed.issuer}/authorize",
        params=authorize_params(signed.app_url, prompt="none"),
        cookies=cookies,
    )
    assert "error=login_required" in after.headers["location"]


def test_sign_out_asked_by_another_site_asks_first_and_goes_only_to_the_clients_address(
    env, signed
):
    """The attacks: a page of another site that navigates to end-session to sign the patient
    out, or to be sent to an address of its own (open redirect). The first gets a page that
    asks (its form posts here); the second is refused on the page, never redirected."""
    tokens = oidc_sign_in(signed.issuer, env.patients()[2][0], signed.app_url)
    params = {"post_logout_redirect_uri": signed.app_url, "client_id": CLIENT_ID}
    asked = httpx.get(
        f"{signed.issuer}/end-session",
        params=params,
        cookies=tokens["_cookies"],
        headers={"sec-fetch-site": "cross-site"},
    )
    assert asked.status_code == 200 and "Sign out of the development sign-in?" in asked.text
    assert "set-cookie" not in asked.headers
    assert _refresh(signed, tokens["refresh_token"]).status_code == 200  # still signed in
    for bad, message in (
        ({**params, "post_logout_redirect_uri": "https://attacker.example/"}, "not registered"),
        ({**params, "client_id": "other"}, "Unknown client_id."),
    ):
        refused = httpx.get(f"{signed.issuer}/end-session", params=bad)
        assert (refused.status_code, "location" in refused.headers) == (400, False)
        assert message in refused.text


def test_an_unknown_account_an_expired_page_or_another_browsers_page_is_refused(env, signed):
    """The last is login CSRF: another site posts a choice with a sign-in page id it fetched
    itself, into the victim's browser, which never asked for that page."""
    with httpx.Client() as browser:
        page = browser.get(f"{signed.issuer}/authorize", params=authorize_params(signed.app_url))
        request_id = re.search(r'name="request" value="([^"]+)"', page.text).group(1)
        nobody = browser.post(
            f"{signed.issuer}/authorize", data={"request": request_id, "subject": "nobody"}
        )
        assert (nobody.status_code, "No such account." in nobody.text) == (400, True)
        stale = browser.post(
            f"{signed.issuer}/authorize",
            data={"request": "made-up", "subject": env.patients()[0][0]},
        )
        assert stale.status_code == 400 and "not started in this browser" in stale.text
        page = browser.get(f"{signed.issuer}/authorize", params=authorize_params(signed.app_url))
        request_id = re.search(r'name="request" value="([^"]+)"', page.text).group(1)
    victim = httpx.post(
        f"{signed.issuer}/authorize",
        data={"request": request_id, "subject": env.patients()[0][0]},
    )
    assert (victim.status_code, "location" in victim.headers) == (400, False)
    assert "This sign-in was not started in this browser." in victim.text
    assert "set-cookie" not in victim.headers


def test_the_web_app_page_names_the_provider_and_production_refuses_one(env, signed):
    page = httpx.get(signed.app_url).text
    assert f'<meta name="oidc-issuer" content="{signed.issuer}">' in page
    assert f'<meta name="oidc-client-id" content="{CLIENT_ID}">' in page
    provider = DevOidcProvider(
        env.identity, "http://x/dev/oidc", {CLIENT_ID: []}, [Person("a", "A")]
    )
    with pytest.raises(ConfigurationError, match="development mode only"):
        create_app(env.settings(), identity_provider=provider)
