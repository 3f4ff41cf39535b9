"""The consent page (/app/consent) in Debian's Chromium, driven by Playwright, against a gateway
that accepts the web app's trusted documents by hash only (as ``gateway dev`` serves the app).

A partner ("Acme Health", registered with a redirect URI on a server of its own here) sends the
patient to the page with its id, the scopes it asks for, its redirect URI and a state. The
patient sees who asks for what in plain words and until when, approves or declines, and lands
back at the partner with the outcome and the state. A forged partner id, an unregistered
redirect URI, a scope the partner may not ask for and an incomplete link are explained on the
page and send the patient nowhere; an approval sent again is refused. In every test: no request
to any origin but the gateway's and the partner's, no CSP violation, no page error; what was
granted is read from the database as superuser.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from gateway import create_app
from gateway.config import Mode
from gateway.policy import scopes
from tests.actors import gid, new_partner, new_patient
from tests.browser import ARTIFACTS, assert_png, chromium, off_the_loop, visiting, wait_until
from tests.support import as_admin, serving
from tests.test_web_app import MANIFEST, OPERATIONS, WebAppVisit

ASKED = [scopes.CONSULTATION, scopes.RECORDING]


async def _back(request):
    return HTMLResponse("<!doctype html><title>Acme Health</title><h1>Back at Acme Health</h1>")


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def gateway(env):
    settings = env.settings(
        mode=Mode.DEVELOPMENT, trusted_documents=MANIFEST, free_form_documents="nobody"
    )
    with serving(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def partner_site():
    """The partner's own site: where the consent page sends the patient back."""
    with serving(Starlette(routes=[Route("/back", _back)])) as server:
        yield server.url


@pytest.fixture
def people(env, partner_site):
    subject, patient = off_the_loop(new_patient, env, "consent-browser")
    _, partner = off_the_loop(new_partner, env, "consent-browser")
    back = f"{partner_site}/back"
    off_the_loop(
        as_admin,
        env,
        lambda c: c.execute(
            "update data.partners set name = 'Acme Health', allowed_scopes = $2, "
            "redirect_uris = $3 where id = $1",
            partner,
            ASKED,  # not the patient's profile
            [back],
        ),
    )
    return {"subject": subject, "patient": patient, "partner": partner, "back": back}


def sign_in(visit: WebAppVisit, token: str) -> None:
    visit.page.get_by_label("Token").fill(token)
    visit.page.get_by_role("button", name="Sign in").click()


def link(gateway: str, people: dict, token: str | None = None, **changes) -> str:
    query = {
        "partner": gid("Partner", people["partner"]),
        "scope": " ".join(ASKED),
        "redirect_uri": people["back"],
        "state": "st-7",
        **changes,
    }
    query = {name: value for name, value in query.items() if value is not None}
    fragment = f"#token={token}" if token else ""
    return f"{gateway}/app/consent?{urlencode(query)}{fragment}"


def granted(env, patient) -> dict:
    async def read(connection):
        consents = await connection.fetch(
            "select partner_id, scopes, expires_at from data.consents where patient_id = $1",
            patient,
        )
        requests = await connection.fetch(
            "select approved from data.consent_requests where patient_id = $1", patient
        )
        return {
            "consents": [dict(r) for r in consents],
            "answers": [r["approved"] for r in requests],
        }

    return off_the_loop(as_admin, env, read)


def landed(visit: WebAppVisit, back: str) -> dict:
    visit.page.wait_for_url(lambda url: url.startswith(back), timeout=30_000)
    visit.page.get_by_role("heading", name="Back at Acme Health").wait_for(timeout=30_000)
    return parse_qs(urlsplit(visit.page.url).query)


def test_approving_on_the_consent_page_grants_exactly_what_was_asked_and_goes_back(
    env, browser, gateway, partner_site, people
):
    token = env.token(people["subject"])
    with visiting(browser, (gateway, partner_site), WebAppVisit) as visit:
        page = visit.page
        page.goto(link(gateway, people))
        sign_in(visit, token)
        page.locator("#consent-request").wait_for(timeout=30_000)
        assert "#" not in page.url
        assert page.title() == "Consent - My consultations"
        assert page.locator("#sections").is_hidden()
        who = page.locator("#consent-who").inner_text()
        asked = page.locator("#consent-scopes li").all_inner_texts()
        until = page.locator("#consent-until time").get_attribute("datetime")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "web-app-consent.png"
        page.screenshot(path=str(shot))
        assert_png(shot, min_bytes=10_000)
        page.get_by_role("button", name="Approve").click()
        outcome = landed(visit, people["back"])
        visit.assert_clean()

    assert who == f"Acme Health asks to read, from the record of Patient {people['patient']}:"
    assert asked == [
        "Your consultations: when they took place, with which clinician, and their summaries",
        "The video and audio recordings of your consultations",
    ]
    code = outcome.pop("code")  # redeemed by the partner: tests/test_consent_page.py
    assert (outcome, len(code[0])) == ({"consent": ["granted"], "state": ["st-7"]}, 43)
    after = granted(env, people["patient"])
    [consent] = after["consents"]
    assert (consent["partner_id"], consent["scopes"]) == (people["partner"], sorted(ASKED))
    assert consent["expires_at"] == datetime.fromisoformat(until)
    assert consent["expires_at"] > datetime.now(UTC) + timedelta(days=89)
    assert after["answers"] == [True]
    assert visit.operations() == ["Me", "RequestConsent", "AnswerConsentRequest"]

    # The approval the page sent, sent again (a replay from the browser's history or a proxy):
    # refused, and nothing more is granted.
    [sent] = [
        e.body
        for e in visit.exchanges
        if e.method == "POST"
        and OPERATIONS["AnswerConsentRequest"] in e.body
        and urlsplit(e.url).path == "/graphql"
    ]
    replay = httpx.post(
        f"{gateway}/graphql",
        content=sent,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    ).json()
    assert [(e["message"], e["extensions"]["code"]) for e in replay["errors"]] == [
        ("This consent request was already answered", "BAD_USER_INPUT")
    ]
    assert replay["data"] is None
    assert granted(env, people["patient"]) == after


def test_declining_after_signing_in_on_the_page_grants_nothing_and_goes_back(
    env, browser, gateway, partner_site, people
):
    with visiting(browser, (gateway, partner_site), WebAppVisit) as visit:
        page = visit.page
        page.goto(link(gateway, people))
        sign_in(visit, env.token(people["subject"]))
        page.locator("#consent-request").wait_for(timeout=30_000)
        page.get_by_role("button", name="Decline").click()
        outcome = landed(visit, people["back"])
        visit.assert_clean()

    assert outcome == {"error": ["access_denied"], "state": ["st-7"]}
    assert granted(env, people["patient"]) == {"consents": [], "answers": [False]}


BAD_LINKS = {
    "forged-partner-id": (
        {"partner": gid("Partner", uuid.uuid4())},
        "This consent link cannot be used: No such partner. Nothing was shared.",
    ),
    "unregistered-redirect": (
        {"redirect_uri": "http://attacker.localhost/back"},
        "This consent link cannot be used: The redirect URI is not registered for Acme Health. "
        "Nothing was shared.",
    ),
    "scope-not-allowed": (
        {"scope": f"{scopes.PATIENT} {scopes.CONSULTATION}"},
        "This consent link cannot be used: Acme Health may not ask for patient/Patient.rs. "
        "Nothing was shared.",
    ),
    "no-state": (
        {"state": None},
        "This consent link is incomplete: it must name a partner, the scopes it asks for, "
        "where to send you back and a state. Nothing was shared.",
    ),
    "incomplete": (
        {"redirect_uri": None},
        "This consent link is incomplete: it must name a partner, the scopes it asks for, "
        "where to send you back and a state. Nothing was shared.",
    ),
}


@pytest.mark.parametrize("case", list(BAD_LINKS))
def test_a_bad_link_is_explained_and_sends_the_patient_nowhere(
    env, browser, gateway, partner_site, people, case
):
    changes, message = BAD_LINKS[case]
    with visiting(browser, (gateway, partner_site), WebAppVisit) as visit:
        page = visit.page
        page.goto(link(gateway, people, **changes))
        sign_in(visit, env.token(people["subject"]))
        status = page.locator("#consent-status")
        wait_until(lambda: status.inner_text() not in ("", "Loading…"), message=status.inner_text)
        shown = status.inner_text()
        buttons = page.get_by_role("button", name="Approve").count()
        visit.assert_clean()

    assert shown == message
    assert page.url.startswith(gateway)
    assert buttons == 0 or page.locator("#consent-request").is_hidden()
    assert not [e for e in visit.exchanges if e.url.startswith(partner_site)]
    assert granted(env, people["patient"]) == {"consents": [], "answers": []}
    expected = ["Me"] if case in ("incomplete", "no-state") else ["Me", "RequestConsent"]
    assert visit.operations() == expected
    # The unregistered redirect's host was never asked for anything either.
    assert json.dumps(visit.foreign_requests()) == "[]"


def test_a_token_in_the_consent_links_fragment_signs_nobody_in(
    env, browser, gateway, partner_site, people
):
    """The attack: a link carrying the attacker's own token (#token=..., which a browser keeps
    across the partner's redirect) would sign the victim in as the attacker, and the consent the
    victim approves would link the victim to the attacker's record at the partner. On the consent
    page the token is dropped from the address and nobody is signed in: the patient signs in."""
    attacker, _ = off_the_loop(new_patient, env, "consent-attacker")
    token = env.token(attacker)
    with visiting(browser, (gateway, partner_site), WebAppVisit) as visit:
        page = visit.page
        page.goto(link(gateway, people, token))
        page.get_by_label("Token").wait_for(timeout=30_000)
        stored = page.evaluate("sessionStorage.length")
        address = page.url
        visit.assert_clean()

    assert (stored, token in address, "#" in address) == (0, False, False)
    assert visit.operations() == []  # nothing was asked of the gateway with that token
