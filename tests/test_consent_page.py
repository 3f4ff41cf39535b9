"""The consent page's two operations over real HTTP, on the production path: a gateway with the
repository's manifest and no free-form documents, each operation sent by its hash as the web
app sends it (apps/operations/consent-request.graphql).

A partner links a patient to /app/consent with its id, the scopes it asks for, a redirect URI
and a state. ``RequestConsent`` checks the link against the partner's registration (enabled,
redirect URI registered, each scope one it may ask for) and keeps the request;
``AnswerConsentRequest`` approves (exactly the scopes asked for) or declines, once, within 15
minutes, and answers with where to send the patient back. Every refusal is BAD_USER_INPUT with
a sentence a patient can read, and the database, read as superuser, shows that nothing was
granted. The browser side is tests/test_consent_page_browser.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.config import Settings
from gateway.policy import scopes
from tests.support.actors import gid, new_clinician, new_partner, new_patient, partner_token
from tests.support.database import as_admin
from tests.support.executors import (
    APP_OPERATIONS,
    INTERPRETER,
    app_manifest_gateway,
    send_operation,
)

ROOT = Path(__file__).resolve().parents[1]
BACK = "https://partner.example/back?app=1"
ASKED = [scopes.RECORDING, scopes.CONSULTATION]
DAYS = Settings.model_fields["consent_request_days"].default


@pytest.fixture(scope="module")
def production(env):
    with app_manifest_gateway(env) as client:
        yield client


def _register(env, partner, allowed, uris=(BACK,), name=None) -> None:
    as_admin(
        env,
        lambda c: c.execute(
            "update data.partners set allowed_scopes = $2, redirect_uris = $3, "
            "name = coalesce($4, name) where id = $1",
            partner,
            list(allowed),
            list(uris),
            name,
        ),
    )


@pytest.fixture
def people(env):
    """A fresh patient, and a partner named "Acme Health" that may ask for every scope and
    send patients back to BACK."""
    subject, patient = new_patient(env, "consent-page")
    partner_subject, partner = new_partner(env, "consent-page")
    _register(env, partner, scopes.ALL, name="Acme Health")
    return {
        "token": env.token(subject),
        "patient": patient,
        "partner": partner,
        "partner_subject": partner_subject,
    }


def send(client, name: str, token: str, variables: dict):
    """The web app's operation by hash (tests.support.executors.send_operation), without the errors'
    locations (where in the reviewed document: not what is tested)."""
    status, body, served = send_operation(client, name, token, variables)
    for error in body.get("errors", []):
        error.pop("locations", None)
    return status, body, served


def ask(client, people, **changes):
    variables = {
        "partner": gid("Partner", people["partner"]),
        "scopes": ASKED,
        "redirectUri": BACK,
        "state": "st-42",
        **changes,
    }
    return send(client, "RequestConsent", people["token"], variables)


def answer(client, token, request_id, approve):
    return send(client, "AnswerConsentRequest", token, {"id": request_id, "approve": approve})


def refusal(name: str, message: str) -> dict:
    # redeemConsentCode returns a nullable Patient: its data stays, null.
    return {
        "data": {name: None} if name == "redeemConsentCode" else None,
        "errors": [{"message": message, "path": [name], "extensions": {"code": "BAD_USER_INPUT"}}],
    }


def stored(env, patient) -> dict:
    """The patient's consents, consent requests and change events, as superuser."""

    async def read(connection):
        consents = await connection.fetch(
            "select id, partner_id, scopes, expires_at, revoked_at from data.consents "
            "where patient_id = $1 order by granted_at",
            patient,
        )
        requests = await connection.fetch(
            "select * from data.consent_requests where patient_id = $1 order by opened_at",
            patient,
        )
        events = await connection.fetch(
            "select kind, detail from data.access_events where patient_id = $1 "
            "and kind like 'consent-%' order by seq",
            patient,
        )
        return {
            "consents": [dict(r) for r in consents],
            "requests": [dict(r) for r in requests],
            "events": [(r["kind"], json.loads(r["detail"])) for r in events],
        }

    return as_admin(env, read)


def test_approving_grants_exactly_the_scopes_asked_for_once(env, production, people):
    started = datetime.now(UTC)
    status, body, served = ask(production, people)
    assert (status, served) == (200, [INTERPRETER])  # a mutation: graphql-core, by its hash
    opened = body["data"]["requestConsent"]
    assert opened["partner"] == {"name": "Acme Health"}
    assert opened["scopes"] == sorted(ASKED)
    ends = datetime.fromisoformat(opened["consentExpiresAt"])
    assert started + timedelta(days=DAYS) <= ends <= datetime.now(UTC) + timedelta(days=DAYS)
    valid = datetime.fromisoformat(opened["validUntil"])
    assert started + timedelta(minutes=15) <= valid <= datetime.now(UTC) + timedelta(minutes=15)
    assert stored(env, people["patient"])["consents"] == []  # asking grants nothing

    status, body, _ = answer(production, people["token"], opened["id"], True)
    answered = body["data"]["answerConsentRequest"]
    assert answered["approved"] is True
    back = urlsplit(answered["redirectTo"])
    returned = parse_qs(back.query)
    assert f"{back.scheme}://{back.netloc}{back.path}?app=1" == BACK
    assert (returned["consent"], returned["state"], len(returned["code"][0])) == (
        ["granted"],
        ["st-42"],
        43,  # 32 random bytes
    )
    after = stored(env, people["patient"])
    [consent] = after["consents"]
    assert (consent["partner_id"], consent["scopes"], consent["revoked_at"]) == (
        people["partner"],
        sorted(ASKED),  # the partner may ask for all three; it asked for two
        None,
    )
    assert consent["expires_at"] == ends
    [request] = after["requests"]
    assert (request["approved"], request["consent_id"]) == (True, consent["id"])
    assert [kind for kind, _ in after["events"]] == ["consent-granted"]
    assert after["events"][0][1]["scopes"] == sorted(ASKED)

    # The same approval sent again: refused, nothing more granted or recorded.
    status, body, _ = answer(production, people["token"], opened["id"], True)
    assert (status, body) == (
        200,
        refusal("answerConsentRequest", "This consent request was already answered"),
    )
    assert stored(env, people["patient"]) == after


def test_declining_grants_nothing_and_tells_the_partner(env, production, people):
    _, body, _ = ask(production, people)
    request_id = body["data"]["requestConsent"]["id"]
    _, body, _ = answer(production, people["token"], request_id, False)
    answered = body["data"]["answerConsentRequest"]
    assert (answered["approved"], answered["redirectTo"]) == (
        False,
        f"{BACK}&error=access_denied&state=st-42",
    )
    # Changing one's mind on the same request is not possible: a new link is a new request.
    _, body, _ = answer(production, people["token"], request_id, True)
    assert body == refusal("answerConsentRequest", "This consent request was already answered")
    after = stored(env, people["patient"])
    assert (after["consents"], after["events"]) == ([], [])
    assert [(r["approved"], r["consent_id"]) for r in after["requests"]] == [(False, None)]


def test_the_state_comes_back_encoded_and_a_uri_without_query_gets_one(env, production, people):
    plain = "https://partner.example/cb"
    _register(env, people["partner"], scopes.ALL, uris=(BACK, plain))
    state = "a&b=c d/é"
    _, body, _ = ask(production, people, redirectUri=plain, state=state)
    _, body, _ = answer(production, people["token"], body["data"]["requestConsent"]["id"], True)
    back = urlsplit(body["data"]["answerConsentRequest"]["redirectTo"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == plain
    returned = parse_qs(back.query)
    assert (returned["consent"], returned["state"]) == (["granted"], [state])


BAD_LINKS = {
    "a-partner-that-does-not-exist": (
        lambda p: {"partner": gid("Partner", uuid.uuid4())},
        "No such partner",
    ),
    "the-id-of-something-else": (
        lambda p: {"partner": gid("Patient", p["patient"])},
        "Expected the ID of a Partner",
    ),
    "not-an-id": (lambda p: {"partner": "not-an-id"}, "Invalid ID"),
    "an-unregistered-redirect": (
        lambda p: {"redirectUri": "https://attacker.example/back"},
        "The redirect URI is not registered for Acme Health",
    ),
    "a-registered-redirect-with-more-after-it": (
        lambda p: {"redirectUri": BACK + "&next=https://attacker.example/"},
        "The redirect URI is not registered for Acme Health",
    ),
    "a-scope-the-partner-may-not-ask-for": (
        lambda p: {"scopes": [scopes.PATIENT, scopes.CONSULTATION]},
        "Acme Health may not ask for patient/Patient.rs",
    ),
    "an-unknown-scope": (
        lambda p: {"scopes": ["patient/*.rs"]},
        f"'scopes' must be among {', '.join(scopes.ALL)}",
    ),
    "no-scope": (lambda p: {"scopes": []}, f"'scopes' must be among {', '.join(scopes.ALL)}"),
    "an-overlong-state": (lambda p: {"state": "s" * 513}, "'state' must be 1 to 512 characters"),
    "an-empty-state": (lambda p: {"state": ""}, "'state' must be 1 to 512 characters"),
}


@pytest.mark.parametrize("case", list(BAD_LINKS))
def test_a_bad_link_is_refused_in_words_and_opens_nothing(env, production, people, case):
    # This partner may ask for consultations and recordings, not the patient's profile.
    _register(env, people["partner"], [scopes.CONSULTATION, scopes.RECORDING])
    changes, message = BAD_LINKS[case]
    status, body, _ = ask(production, people, **changes(people))
    assert (status, body) == (200, refusal("requestConsent", message))
    assert stored(env, people["patient"]) == {"consents": [], "requests": [], "events": []}


def test_a_disabled_partner_cannot_ask_or_be_approved(env, production, people):
    _, body, _ = ask(production, people)
    request_id = body["data"]["requestConsent"]["id"]
    as_admin(
        env,
        lambda c: c.execute(
            "update data.partners set disabled_at = now() where id = $1", people["partner"]
        ),
    )
    for approve in (True, False):  # not even a decline sends the patient to it now
        _, body, _ = answer(production, people["token"], request_id, approve)
        assert body == refusal("answerConsentRequest", "No such partner")
    _, body, _ = ask(production, people)
    assert body == refusal("requestConsent", "No such partner")
    after = stored(env, people["patient"])
    assert (after["consents"], [r["answered_at"] for r in after["requests"]]) == ([], [None])


def test_a_request_unanswered_for_15_minutes_expires(env, production, people):
    _, body, _ = ask(production, people)
    request_id = body["data"]["requestConsent"]["id"]
    as_admin(
        env,
        lambda c: c.execute(
            "update data.consent_requests set valid_until = now() - interval '1 second' "
            "where patient_id = $1",
            people["patient"],
        ),
    )
    _, body, _ = answer(production, people["token"], request_id, True)
    assert body == refusal(
        "answerConsentRequest",
        "This consent request has expired: go back to the partner and start again",
    )
    assert stored(env, people["patient"])["consents"] == []


def test_another_patient_cannot_answer_a_request(env, production, people):
    """The attack: a patient who learnt another's request id (from a shared screen, a log)
    approves it. The request is not theirs: no such request, and the owner's stays open."""
    _, body, _ = ask(production, people)
    request_id = body["data"]["requestConsent"]["id"]
    intruder, _ = new_patient(env, "consent-intruder")
    _, body, _ = answer(production, env.token(intruder), request_id, True)
    assert body == refusal("answerConsentRequest", "No such consent request")
    assert stored(env, people["patient"])["consents"] == []
    _, body, _ = answer(production, people["token"], request_id, True)
    assert body["data"]["answerConsentRequest"]["approved"] is True


@pytest.mark.parametrize("role", ["partner", "clinician"])
def test_the_consent_page_operations_are_for_patient_accounts_only(env, production, people, role):
    """The attack: the partner (or anyone not a patient) opens or approves a request itself."""
    if role == "partner":
        token = partner_token(env, people["partner_subject"])
    else:
        token = env.token(new_clinician(env, "consent-page")[0])
    _, body, _ = ask(production, people)
    request_id = body["data"]["requestConsent"]["id"]
    for name, variables in (
        (
            "RequestConsent",
            {"partner": gid("Partner", people["partner"]), "scopes": ASKED, "redirectUri": BACK},
        ),
        ("AnswerConsentRequest", {"id": request_id, "approve": True}),
    ):
        status, body, served = send(production, name, token, variables)
        assert (status, body, served) == (
            403,
            {
                "errors": [
                    {
                        "message": f"The operation '{name}' is for patient accounts",
                        "extensions": {"code": "FORBIDDEN"},
                    }
                ]
            },
            [],
        )
    after = stored(env, people["patient"])
    assert after["consents"] == [] and [r["answered_at"] for r in after["requests"]] == [None]


def test_a_redirect_uri_removed_after_the_request_is_not_used(env, production, people):
    """The operator removed the address (compromised, say) while the patient was reading the
    page: the answer is refused rather than sending the patient there."""
    _, body, _ = ask(production, people)
    request_id = body["data"]["requestConsent"]["id"]
    _register(env, people["partner"], scopes.ALL, uris=("https://partner.example/new",))
    for approve in (True, False):
        _, body, _ = answer(production, people["token"], request_id, approve)
        assert body == refusal(
            "answerConsentRequest", "The redirect URI is no longer registered for Acme Health"
        )
    assert stored(env, people["patient"])["consents"] == []


def test_two_requests_approved_at_once_leave_one_consent_in_force(env, production, people):
    """Two tabs, two requests of one partner, both approved at the same moment: each approval
    replaces the consent before it, so exactly one is in force."""
    import asyncio

    import httpx

    ids = []
    for asked in ([scopes.CONSULTATION], [scopes.RECORDING]):
        _, body, _ = ask(production, people, scopes=asked)
        ids.append(body["data"]["requestConsent"]["id"])
    sha = APP_OPERATIONS["AnswerConsentRequest"]["id"]

    async def approve_both():
        async with httpx.AsyncClient(base_url=production.http.base_url) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/graphql",
                        json={
                            "variables": {"id": request_id, "approve": True},
                            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}},
                        },
                        headers={"authorization": f"Bearer {people['token']}"},
                    )
                    for request_id in ids
                )
            )

    responses = asyncio.run(approve_both())
    assert [r.json()["data"]["answerConsentRequest"]["approved"] for r in responses] == [True] * 2
    consents = stored(env, people["patient"])["consents"]
    assert len(consents) == 2
    assert len([c for c in consents if c["revoked_at"] is None]) == 1


def redeem(client, token, code, state="st-42"):
    return send(client, "RedeemConsentCode", token, {"code": code, "state": state})


def approved_code(client, people, asked) -> str:
    _, body, _ = ask(client, people, scopes=asked)
    _, body, _ = answer(client, people["token"], body["data"]["requestConsent"]["id"], True)
    return parse_qs(urlsplit(body["data"]["answerConsentRequest"]["redirectTo"]).query)["code"][0]


def test_the_partner_learns_who_approved_by_redeeming_the_code_once(env, production, people):
    """The return says nothing of who answered; the code, redeemed with the partner's own token,
    does: the patient, under the consent just given (patient/Patient.rs here)."""
    code = approved_code(production, people, [scopes.PATIENT, scopes.CONSULTATION])
    token = partner_token(env, people["partner_subject"])
    status, body, served = redeem(production, token, code)
    assert (status, served) == (200, [INTERPRETER])
    assert body == {
        "data": {
            "redeemConsentCode": {
                "id": gid("Patient", people["patient"]),
                "displayName": f"Patient {people['patient']}",
            }
        }
    }
    # Once: the same code again (a replayed return, a leaked log line) is refused.
    _, body, _ = redeem(production, token, code)
    assert body == refusal(
        "redeemConsentCode", "This code is not valid: unknown, used, or older than ten minutes"
    )


def test_a_code_is_the_partners_own_and_lives_ten_minutes(env, production, people):
    code = approved_code(production, people, [scopes.PATIENT])
    other_subject, _ = new_partner(env, "consent-other")
    invalid = refusal(
        "redeemConsentCode", "This code is not valid: unknown, used, or older than ten minutes"
    )
    # Another partner holding the code (it travelled through a browser) learns nothing.
    _, body, _ = redeem(production, partner_token(env, other_subject), code)
    assert body == invalid
    # Nor does the partner itself for another of its sessions: someone who stole a return and
    # brought it back in a session of their own has that session's state, not this one's.
    _, body, _ = redeem(production, partner_token(env, people["partner_subject"]), code, "st-43")
    assert body == invalid
    for wrong in ("", "x" * 43, code[:-1]):
        _, body, _ = redeem(production, partner_token(env, people["partner_subject"]), wrong)
        assert body == invalid
    as_admin(
        env,
        lambda c: c.execute(
            "update data.consent_requests set code_expires_at = now() - interval '1 second' "
            "where patient_id = $1",
            people["patient"],
        ),
    )
    _, body, _ = redeem(production, partner_token(env, people["partner_subject"]), code)
    assert body == invalid
    # A patient cannot redeem one (the operation is for partner accounts).
    status, body, _ = redeem(production, people["token"], code)
    assert (status, body["errors"][0]["message"]) == (
        403,
        "The operation 'RedeemConsentCode' is for partner accounts",
    )


def test_what_the_redeemed_patient_shows_follows_the_consent(env, production, people):
    """Approved for consultations only: the code is spent, and the patient it names is not the
    partner's to see (patient/Patient.rs was not given): null, as a patient by ID would be."""
    code = approved_code(production, people, [scopes.CONSULTATION])
    token = partner_token(env, people["partner_subject"])
    _, body, _ = redeem(production, token, code)
    assert body == {"data": {"redeemConsentCode": None}}
    _, body, _ = redeem(production, token, code)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"  # spent all the same
