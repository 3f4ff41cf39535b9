"""The consent page (/app/consent) in Debian's Chromium, driven by Playwright, against a gateway
that accepts the web app's trusted documents by hash only (as ``gateway dev`` serves the app).

A partner ("Acme Health", registered with a redirect URI on a server of its own here) sends the
patient to the page with its id, the scopes it asks for, its redirect URI and a state. The
patient sees who asks for what in plain words and until when, approves or declines, and lands
back at the partner with the outcome and the state. The patient signs in on the page, through the
development provider, and comes back to the request as it was. A forged partner id, an unregistered
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

from gateway.dev.oidc import Person
from gateway.policy import scopes
from tests.support.actors import gid, new_partner, new_patient
from tests.support.browser import (
    ARTIFACTS,
    assert_png,
    chromium,
    off_the_loop,
    visiting,
    wait_until,
)
from tests.support.database import as_admin
from tests.support.server import serving
from tests.support.sign_in import authorization_answer, gateway_with_sign_in, pkce_pair
from tests.test_web_app import OPERATIONS, WebAppVisit, dev_settings, stored_session

ASKED = [scopes.CONSULTATION, scopes.RECORDING]


async def _back(request):
    return HTMLResponse("<!doctype html><title>Acme Health</title><h1>Back at Acme Health</h1>")


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def signed(env):
    """A development gateway with its provider; each test's patient is offered on its page."""
    with gateway_with_sign_in(env, dev_settings(env), []) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def gateway(signed):
    return signed.url


@pytest.fixture(scope="module")
def partner_site():
    """The partner's own site: where the consent page sends the patient back."""
    with serving(Starlette(routes=[Route("/back", _back)])) as server:
        yield server.url


@pytest.fixture
def people(env, partner_site, signed):
    subject, patient = off_the_loop(new_patient, env, "consent-browser")
    signed.provider.offer(Person(subject, f"Patient {patient}"))
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


def sign_in(visit: WebAppVisit, subject: str) -> None:
    """On the consent page: the app's Sign in, the provider's page, the patient's name; back on
    the consent page, with the partner's request as it was."""
    visit.page.get_by_role("button", name="Sign in", exact=True).click()
    visit.page.locator(f'button[name="subject"][value="{subject}"]').click()


def link(gateway: str, people: dict, **changes) -> str:
    query = {
        "partner": gid("Partner", people["partner"]),
        "scope": " ".join(ASKED),
        "redirect_uri": people["back"],
        "state": "st-7",
        **changes,
    }
    query = {name: value for name, value in query.items() if value is not None}
    return f"{gateway}/app/consent?{urlencode(query)}"


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
    with visiting(browser, (gateway, partner_site), WebAppVisit) as visit:
        page = visit.page
        page.goto(link(gateway, people))
        sign_in(visit, people["subject"])
        page.locator("#consent-request").wait_for(timeout=30_000)
        assert page.url == link(gateway, people)
        token = stored_session(visit)["accessToken"]
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
        sign_in(visit, people["subject"])
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
        sign_in(visit, people["subject"])
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


def answer_not_taken(signed, subject: str) -> str:
    """The provider's answer to someone's own sign-in (the app's address with their code), as
    they would have it before their app exchanges the code."""
    return authorization_answer(
        signed.issuer, subject, signed.app_url, pkce_pair()[1], state="their-state"
    )


def test_a_sign_in_answer_forged_by_someone_else_signs_nobody_in(
    env, browser, signed, partner_site, people
):
    """The attack (login CSRF): the attacker signs in to the provider as themself, stops before
    their own app takes the code, and sends the victim the app's address with that code. Had the
    app taken it, the victim would be signed in as the attacker, and the consent the victim then
    approves would link the victim to the attacker's record at the partner. The app takes an
    answer only for a sign-in it started in this tab (its state): the code is dropped from the
    address, nobody is signed in, and the attacker's code is never exchanged."""
    attacker, attacker_patient = off_the_loop(new_patient, env, "consent-attacker")
    signed.provider.offer(Person(attacker, f"Patient {attacker_patient}"))
    forged = answer_not_taken(signed, attacker)
    with visiting(browser, (signed.url, partner_site), WebAppVisit) as visit:
        page = visit.page
        page.goto(forged)
        page.get_by_role("heading", name="Sign in", level=1).wait_for(timeout=30_000)
        notice = page.get_by_role("alert").inner_text()
        address = page.url
        stored = stored_session(visit)
        visit.assert_clean()

    assert notice == (
        "This sign-in was not started here, or it was already used. Please sign in again."
    )
    assert (stored, "code=" in address) == (None, False)
    assert [e for e in visit.exchanges if e.url.endswith("/token")] == []
    assert visit.operations() == []  # nothing was asked of the gateway
