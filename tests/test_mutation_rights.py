"""Every role x every change of access (grantConsent, revokeConsent, requestConsent,
answerConsentRequest, openBreakGlass).

Only a patient grants and revokes consent and opens and answers consent requests, only a
clinician opens break-glass (README's role table). Every other role gets FORBIDDEN with the
table's sentence, and the database, read as superuser, holds no new consent, no revocation, no
consent request or answer, no grant and no change event for that request.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from gateway.policy import scopes
from gateway.policy.table import MUTATIONS
from tests.support.actors import REASON, Grants, gid, new_clinician, new_partner, partner_token
from tests.support.database import as_admin

ROLES = ("patient", "clinician", "support", "partner", "auditor")
CHANGE_KINDS = ["consent-granted", "consent-revoked", "break-glass-opened"]
GRANT = """mutation($p: ID!, $s: [String!]!, $e: DateTime!) {
  grantConsent(partnerId: $p, scopes: $s, expiresAt: $e) { id scopes active } }"""
REVOKE = "mutation($id: ID!) { revokeConsent(id: $id) { id active } }"
OPEN = """mutation($p: ID!, $r: String!) {
  openBreakGlass(patientId: $p, reason: $r, minutes: 5) { id reason patient { id } } }"""
REQUEST = """mutation($p: ID!, $s: [String!]!, $r: String!) {
  requestConsent(partnerId: $p, scopes: $s, redirectUri: $r, state: "x") { id scopes } }"""
ANSWER = "mutation($id: ID!) { answerConsentRequest(id: $id, approve: true) { id approved } }"
REDIRECT = "https://rights.example/callback"
ALLOWED = {
    "grantConsent": "patient",
    "revokeConsent": "patient",
    "requestConsent": "patient",
    "answerConsentRequest": "patient",
    "redeemConsentCode": "partner",
    "openBreakGlass": "clinician",
}
REDEEM = 'mutation($c: String!) { redeemConsentCode(code: $c, state: "x") { id } }'


@pytest.fixture(scope="module")
def world(env):
    """A patient T (no consents of their own), a fresh partner, a clinician who never saw T,
    and a consent of T to the partner that every caller below tries to revoke."""
    target_subject, target = next(
        (s, p)
        for s, p in reversed(env.patients())
        if not as_admin(
            env,
            lambda c, p=p: c.fetchval(
                "select count(*) from data.consents where patient_id = $1", p
            ),
        )
    )
    grants = Grants(env)
    partner_subject, partner = new_partner(env, "rights")
    clinician_subject, clinician = new_clinician(env, "rights")
    consent = grants.consent(target, partner, [scopes.CONSULTATION])
    waiting = uuid.uuid4()

    async def register(connection):
        await connection.execute(
            "update data.partners set allowed_scopes = $2, redirect_uris = $3 where id = $1",
            partner,
            list(scopes.ALL),
            [REDIRECT],
        )
        await connection.execute(
            "insert into data.consent_requests (id, patient_id, partner_id, scopes, "
            "redirect_uri, state, consent_expires_at, valid_until) values "
            "($1, $2, $3, $4, $5, 's', now() + interval '7 days', now() + interval '15 minutes')",
            waiting,
            target,
            partner,
            [scopes.RECORDING],
            REDIRECT,
        )

    as_admin(env, register)
    yield {
        "grants": grants,
        "T": target,
        "partner": partner,
        "clinician": clinician,
        "consent": consent,
        "waiting": waiting,
        "tokens": {
            "patient": env.token(target_subject),
            "clinician": env.token(clinician_subject),
            "support": env.token("support-0001"),
            "partner": partner_token(env, partner_subject),
            "auditor": env.token("auditor-0001"),
        },
    }
    # Changes the allowed roles made, to be removed with the rest.
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select id, 'consent' as kind from data.consents where patient_id = $1 "
            "and partner_id = $2 union all select id, 'grant' from data.break_glass_grants "
            "where clinician_id = $3",
            target,
            partner,
            clinician,
        ),
    )
    grants.consents += [r["id"] for r in rows if r["kind"] == "consent"]
    grants.break_glass += [r["id"] for r in rows if r["kind"] == "grant"]
    as_admin(
        env,
        lambda c: c.execute("delete from data.consent_requests where patient_id = $1", target),
    )
    grants.close()


def _state(env, world) -> dict:
    """What the changes could touch, read as superuser."""

    async def read(connection):
        consents = await connection.fetch(
            "select id, scopes, revoked_at from data.consents where patient_id = $1 "
            "and partner_id = $2 order by id",
            world["T"],
            world["partner"],
        )
        grants = await connection.fetch(
            "select id from data.break_glass_grants where patient_id = $1 order by id", world["T"]
        )
        requests = await connection.fetch(
            "select id, answered_at, approved, consent_id from data.consent_requests "
            "where patient_id = $1 order by id",
            world["T"],
        )
        return {
            "consents": [dict(r) for r in consents],
            "grants": [r["id"] for r in grants],
            "requests": [dict(r) for r in requests],
        }

    return as_admin(env, read)


def _change_events(env, request_id: str) -> list[tuple]:
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select kind, subject, patient_id from data.access_events "
            "where request_id = $1 and kind = any($2) order by seq",
            request_id,
            CHANGE_KINDS,
        ),
    )
    return [(r["kind"], r["patient_id"]) for r in rows]


def _call(client, mutation: str, token: str, world):
    request_id = f"rights-{uuid.uuid4().hex}"
    query, variables = {
        "grantConsent": (
            GRANT,
            {
                "p": gid("Partner", world["partner"]),
                "s": [scopes.RECORDING],
                "e": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            },
        ),
        "revokeConsent": (REVOKE, {"id": gid("Consent", world["consent"])}),
        "requestConsent": (
            REQUEST,
            {"p": gid("Partner", world["partner"]), "s": [scopes.RECORDING], "r": REDIRECT},
        ),
        "answerConsentRequest": (ANSWER, {"id": gid("ConsentRequest", world["waiting"])}),
        "redeemConsentCode": (REDEEM, {"c": "a-code-the-partner-was-never-sent"}),
        "openBreakGlass": (OPEN, {"p": gid("Patient", world["T"]), "r": REASON}),
    }[mutation]
    response = client.post(query, token, variables, **{"x-request-id": request_id})
    assert response.status_code == 200
    return response.json(), request_id


def test_every_change_of_access_the_table_lists_is_tested_here():
    assert {right.mutation: {r.value for r in right.roles} for right in MUTATIONS} == {
        mutation: {role} for mutation, role in ALLOWED.items()
    }


DENIED = [(m, role) for m in ALLOWED for role in ROLES if role != ALLOWED[m]]


@pytest.mark.parametrize(("mutation", "role"), DENIED, ids=[f"{m}-by-{r}" for m, r in DENIED])
def test_a_role_the_table_does_not_list_is_refused_and_changes_nothing(
    env, client, world, mutation, role
):
    before = _state(env, world)
    body, request_id = _call(client, mutation, world["tokens"][role], world)
    allowed = ALLOWED[mutation]
    # revokeConsent and redeemConsentCode return a nullable object; the others non-null ones.
    data = {mutation: None} if mutation in ("revokeConsent", "redeemConsentCode") else None
    assert body["data"] == data
    assert [(e["message"], e["path"], e["extensions"]) for e in body["errors"]] == [
        (f"Only a {allowed} may do this", [mutation], {"code": "FORBIDDEN"})
    ]
    assert _state(env, world) == before
    assert _change_events(env, request_id) == []


def test_the_patient_grants_consent_and_the_change_is_recorded(env, client, world):
    before = _state(env, world)
    body, request_id = _call(client, "grantConsent", world["tokens"]["patient"], world)
    after = _state(env, world)
    new = [c for c in after["consents"] if c["id"] not in {b["id"] for b in before["consents"]}]
    assert len(new) == 1 and new[0]["scopes"] == [scopes.RECORDING]
    assert new[0]["revoked_at"] is None
    assert body == {
        "data": {
            "grantConsent": {
                "id": gid("Consent", new[0]["id"]),
                "scopes": [scopes.RECORDING],
                "active": True,
            }
        }
    }
    assert _change_events(env, request_id) == [("consent-granted", world["T"])]
    # Granting replaced the earlier consent to the same partner: the one the others tried to
    # revoke, which is revoked now. Give the remaining tests a live one again.
    assert all(c["revoked_at"] is not None for c in after["consents"] if c["id"] != new[0]["id"])
    world["consent"] = new[0]["id"]


def test_the_patient_revokes_their_consent_and_the_change_is_recorded(env, client, world):
    body, request_id = _call(client, "revokeConsent", world["tokens"]["patient"], world)
    assert body == {
        "data": {"revokeConsent": {"id": gid("Consent", world["consent"]), "active": False}}
    }
    revoked = next(c for c in _state(env, world)["consents"] if c["id"] == world["consent"])
    assert revoked["revoked_at"] is not None
    assert _change_events(env, request_id) == [("consent-revoked", world["T"])]


def test_a_clinician_opens_break_glass_and_the_change_is_recorded(env, client, world):
    before = _state(env, world)
    body, request_id = _call(client, "openBreakGlass", world["tokens"]["clinician"], world)
    opened = [g for g in _state(env, world)["grants"] if g not in before["grants"]]
    assert len(opened) == 1
    row = as_admin(
        env,
        lambda c: c.fetchrow("select * from data.break_glass_grants where id = $1", opened[0]),
    )
    assert (row["clinician_id"], row["patient_id"], row["reason"]) == (
        world["clinician"],
        world["T"],
        REASON,
    )
    assert body == {
        "data": {
            "openBreakGlass": {
                "id": gid("BreakGlassGrant", row["id"]),
                "reason": REASON,
                "patient": {"id": gid("Patient", world["T"])},
            }
        }
    }
    assert _change_events(env, request_id) == [("break-glass-opened", world["T"])]
