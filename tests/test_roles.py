"""Support, partners under consent and scopes, break-glass and auditors, as users meet them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gateway.ids import decode_global_id, encode_global_id
from tests.support.actors import REASON, gid, new_clinician, new_partner, partner_token
from tests.support.database import as_admin

LIST = "{ consultations(first: 100) { edges { node { id summary recordings { id } } } } }"
EXPIRES = (datetime.now(UTC) + timedelta(days=30)).isoformat()


_admin = as_admin


def _new_partner(env) -> tuple[str, str]:
    """A fresh partner account: (subject, global id)."""
    subject, pk = new_partner(env, "roles")
    return subject, gid("Partner", pk)


def _grant(client, token, partner_id, scopes, expires=EXPIRES):
    return client.execute(
        "mutation($p: ID!, $s: [String!]!, $e: DateTime!) { grantConsent(partnerId: $p, "
        "scopes: $s, expiresAt: $e) { id scopes active partner { id } } }",
        token,
        {"p": partner_id, "s": scopes, "e": expires},
    )


def _listed(body) -> set[str]:
    return {e["node"]["id"] for e in body["data"]["consultations"]["edges"]}


# --- partners -----------------------------------------------------------------------------------


def test_a_partner_sees_exactly_the_consenting_patients_consultations(env, client):
    subject, partner_id = _new_partner(env)
    patient_subject, patient = env.patients()[4]
    assert _listed(client.execute(LIST, partner_token(env, subject))) == set()
    granted = _grant(
        client,
        env.token(patient_subject),
        partner_id,
        ["patient/Consultation.rs", "patient/Recording.rs"],
    )
    assert granted["data"]["grantConsent"]["active"] is True
    body = client.execute(LIST, partner_token(env, subject))
    assert _listed(body) == {
        encode_global_id("Consultation", pk) for pk in env.truth.consultations_of_patient[patient]
    }
    recordings = {
        r["id"] for e in body["data"]["consultations"]["edges"] for r in e["node"]["recordings"]
    }
    assert recordings == {
        encode_global_id("Recording", pk) for pk in env.truth.recordings_of_patient[patient]
    }


def test_revoking_consent_takes_effect_on_the_very_next_request(env, client):
    subject, partner_id = _new_partner(env)
    patient_subject, _ = env.patients()[5]
    patient_token = env.token(patient_subject)
    consent = _grant(client, patient_token, partner_id, ["patient/Consultation.rs"])
    assert _listed(client.execute(LIST, partner_token(env, subject)))
    revoked = client.execute(
        "mutation($id: ID!) { revokeConsent(id: $id) { active revokedAt } }",
        patient_token,
        {"id": consent["data"]["grantConsent"]["id"]},
    )
    assert revoked["data"]["revokeConsent"]["active"] is False
    assert _listed(client.execute(LIST, partner_token(env, subject))) == set()


def test_a_partner_with_the_scope_but_no_consent_sees_nothing(env, client):
    subject, _ = _new_partner(env)
    _, patient = env.patients()[6]
    token = partner_token(env, subject)
    assert _listed(client.execute(LIST, token)) == set()
    for pk in env.truth.consultations_of_patient[patient]:
        body = client.execute(
            "query($id: ID!) { consultation(id: $id) { id } }",
            token,
            {"id": encode_global_id("Consultation", pk)},
        )
        assert body == {"data": {"consultation": None}}


def test_a_partner_with_consent_but_no_token_scope_sees_nothing(env, client):
    subject, partner_id = _new_partner(env)
    patient_subject, patient = env.patients()[7]
    _grant(client, env.token(patient_subject), partner_id, ["patient/Consultation.rs"])
    token = partner_token(env, subject, "patient/Recording.rs")
    assert _listed(client.execute(LIST, token)) == set()
    consultation = sorted(env.truth.consultations_of_patient[patient])[0]
    body = client.execute(
        "query($id: ID!) { consultation(id: $id) { id } }",
        token,
        {"id": encode_global_id("Consultation", consultation)},
    )
    assert body == {"data": {"consultation": None}}


def test_a_partner_sees_only_the_fields_both_token_and_consent_allow(env, client):
    subject, partner_id = _new_partner(env)
    patient_subject, _ = env.patients()[8]
    _grant(client, env.token(patient_subject), partner_id, ["patient/Consultation.rs"])
    body = client.execute(
        "{ consultations { edges { node { id summary reason recordings { id } "
        "patient { displayName } } } } }",
        partner_token(env, subject),
    )
    nodes = [e["node"] for e in body["data"]["consultations"]["edges"]]
    assert nodes and all(
        n["id"] and n["reason"] is None and n["recordings"] is None and n["patient"] is None
        for n in nodes
    )
    denied = {(e["path"][-1], e["extensions"]["code"]) for e in body["errors"]}
    # reason: never for partners; recordings: the consent lacks patient/Recording.rs; the patient
    # row: the consent lacks patient/Patient.rs, so it does not exist for this partner.
    assert denied == {("reason", "FORBIDDEN"), ("recordings", "FORBIDDEN")}


def test_an_expired_consent_is_inert(env, client):
    subject, partner_id = _new_partner(env)
    patient_subject, _ = env.patients()[9]
    _grant(client, env.token(patient_subject), partner_id, ["patient/Consultation.rs"])
    assert _listed(client.execute(LIST, partner_token(env, subject)))
    partner = decode_global_id(partner_id)[1]
    _admin(
        env,
        lambda c: c.execute(
            "update data.consents set granted_at = now() - interval '2 days', "
            "expires_at = now() - interval '1 second' where partner_id = $1",
            partner,
        ),
    )
    assert _listed(client.execute(LIST, partner_token(env, subject))) == set()


@pytest.mark.parametrize(
    ("scopes", "expires", "message"),
    [
        (["patient/Everything.rs"], EXPIRES, "'scopes' must be among"),
        ([], EXPIRES, "'scopes' must be among"),
        (
            ["patient/Consultation.rs"],
            "2020-01-01T00:00:00+00:00",
            "'expiresAt' must be in the future",
        ),
        (
            ["patient/Consultation.rs"],
            (datetime.now(UTC) + timedelta(days=3000)).isoformat(),
            "'expiresAt' must be in the future and within 730 days",
        ),
        (["patient/Consultation.rs"], "2030-01-01T00:00:00", "'expiresAt' needs a time zone"),
    ],
    ids=["unknown-scope", "no-scope", "past", "too-far", "no-time-zone"],
)
def test_bad_consent_input_is_refused_with_a_clear_message(env, client, scopes, expires, message):
    _, partner_id = _new_partner(env)
    body = _grant(client, env.token(env.patients()[10][0]), partner_id, scopes, expires)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["message"].startswith(message)


def test_consent_to_an_unknown_partner_is_refused(env, client):
    body = _grant(
        client,
        env.token(env.patients()[10][0]),
        encode_global_id("Partner", uuid.uuid4()),
        ["patient/Consultation.rs"],
    )
    assert body["errors"][0]["message"] == "No such partner"


def test_only_patients_grant_consent_and_only_their_own_is_revocable(env, client):
    _, partner_id = _new_partner(env)
    clinician = env.token(env.clinicians()[0][0])
    body = _grant(client, clinician, partner_id, ["patient/Consultation.rs"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    owner_token = env.token(env.patients()[11][0])
    consent = _grant(client, owner_token, partner_id, ["patient/Consultation.rs"])
    stranger = env.token(env.patients()[0][0])
    body = client.execute(
        "mutation($id: ID!) { revokeConsent(id: $id) { id } }",
        stranger,
        {"id": consent["data"]["grantConsent"]["id"]},
    )
    assert body == {"data": {"revokeConsent": None}}
    listed = client.execute("{ consents { id active } }", owner_token)["data"]["consents"]
    assert {"id": consent["data"]["grantConsent"]["id"], "active": True} in listed


# --- support ------------------------------------------------------------------------------------


def test_support_sees_scheduling_of_every_consultation_and_nothing_clinical(env, client):
    token = env.token("support-0001")
    body = client.execute(
        "{ consultations(first: 100) { edges { node { id scheduledAt status mode "
        "clinician { displayName } patient { displayName birthDate } reason summary "
        "clinicianNotes recordings { id } } } } }",
        token,
    )
    nodes = [e["node"] for e in body["data"]["consultations"]["edges"]]
    total = _admin(env, lambda c: c.fetchval("select count(*) from data.consultations"))
    assert len(nodes) == min(100, total)
    assert all(
        n["scheduledAt"] and n["clinician"]["displayName"] and n["patient"]["displayName"]
        for n in nodes
    )
    assert all(
        n[f] is None for n in nodes for f in ("reason", "summary", "clinicianNotes", "recordings")
    )
    assert all(n["patient"]["birthDate"] is None for n in nodes)
    denied = {e["path"][-1] for e in body["errors"]}
    assert denied == {"reason", "summary", "clinicianNotes", "recordings", "birthDate"}
    recording = sorted(env.truth.recordings_of_patient[env.patients()[0][1]])[0]
    assert client.execute(
        "query($id: ID!) { recording(id: $id) { id } }",
        token,
        {"id": encode_global_id("Recording", recording)},
    ) == {"data": {"recording": None}}


# --- break-glass --------------------------------------------------------------------------------


def _stranger(env):
    """A new clinician, and a patient they never saw (they have seen no one)."""
    subject, _ = new_clinician(env, "roles")
    patient_subject, patient = env.patients()[1]
    return subject, patient_subject, patient


def _open(client, token, patient, reason=REASON, minutes=None):
    return client.execute(
        "mutation($p: ID!, $r: String!, $m: Int) { openBreakGlass(patientId: $p, reason: $r, "
        "minutes: $m) { id reason expiresAt patient { displayName } } }",
        token,
        {"p": encode_global_id("Patient", patient), "r": reason, "m": minutes},
    )


def _metric(client, name) -> float:
    match = re.search(rf"^{name} ([0-9.]+)$", client.http.get("/metrics").text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_break_glass_opens_audited_access_that_the_patient_sees_and_that_expires(env, client):
    subject, patient_subject, patient = _stranger(env)
    token = env.token(subject)
    consultation = sorted(env.truth.consultations_of_patient[patient])[0]
    read = "query($id: ID!) { consultation(id: $id) { id reason clinicianNotes } }"
    variables = {"id": encode_global_id("Consultation", consultation)}
    assert client.execute(read, token, variables) == {"data": {"consultation": None}}

    opened = _open(client, token, patient)
    grant = opened["data"]["openBreakGlass"]
    assert grant["reason"] == REASON and grant["patient"]["displayName"]
    expires = datetime.fromisoformat(grant["expiresAt"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(minutes=60)

    before = _metric(client, "gateway_break_glass_reads_total")
    body = client.execute(read, token, variables)
    assert body["data"]["consultation"]["reason"]
    assert body["data"]["consultation"]["clinicianNotes"] is None  # not theirs: notes stay shut
    assert body["errors"][0]["path"] == ["consultation", "clinicianNotes"]
    assert _metric(client, "gateway_break_glass_reads_total") == before + 1

    log = client.execute(
        "{ accessLog(first: 10) { edges { node { kind accessorSubject breakGlassReason "
        "objects { id } } } } }",
        env.token(patient_subject),
    )["data"]["accessLog"]["edges"]
    mine = [e["node"] for e in log if e["node"]["accessorSubject"] == subject]
    assert {
        "kind": "DISCLOSURE",
        "accessorSubject": subject,
        "breakGlassReason": REASON,
        "objects": [{"id": variables["id"]}],
    } in mine
    assert any(n["kind"] == "BREAK_GLASS_OPENED" and n["breakGlassReason"] == REASON for n in mine)

    _admin(
        env,
        lambda c: c.execute(
            "update data.break_glass_grants set opened_at = now() - interval '2 hours', "
            "expires_at = now() - interval '1 second' where id = $1",
            decode_global_id(grant["id"])[1],
        ),
    )
    assert client.execute(read, token, variables) == {"data": {"consultation": None}}


@pytest.mark.parametrize(
    ("reason", "minutes", "message"),
    [
        ("too short", None, "'reason' must be at least 20 characters"),
        ("                          ", None, "'reason' must be at least 20 characters"),
        (REASON, 0, "'minutes' must be between 1 and 240"),
        (REASON, 241, "'minutes' must be between 1 and 240"),
    ],
)
def test_bad_break_glass_input_is_refused(env, client, reason, minutes, message):
    subject, _, patient = _stranger(env)
    body = _open(client, env.token(subject), patient, reason, minutes)
    assert body["data"] is None
    assert body["errors"][0]["message"] == message


def test_only_clinicians_open_break_glass_and_the_database_caps_it(env, client):
    _, patient_subject, patient = _stranger(env)
    body = _open(client, env.token(patient_subject), patient)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    async def too_long(connection):
        clinician = env.clinicians()[0][1]
        await connection.execute(
            "insert into data.break_glass_grants (id, clinician_id, patient_id, reason, "
            "expires_at) values ($1, $2, $3, $4, now() + interval '2 days')",
            uuid.uuid4(),
            clinician,
            patient,
            REASON,
        )

    with pytest.raises(asyncpg.CheckViolationError, match="break_glass_at_most_a_day"):
        _admin(env, too_long)


# --- auditors -----------------------------------------------------------------------------------


def test_an_auditor_reads_every_patients_access_events_and_nothing_clinical(env, client):
    token = env.token("auditor-0001")
    for subject, _ in env.patients()[:3]:
        client.execute("{ consultations { edges { node { id } } } }", env.token(subject))
    body = client.execute(
        "{ accessLog(first: 100) { edges { node { patientId kind } } } "
        "consultations { edges { node { id } } } }",
        token,
    )
    patients = {e["node"]["patientId"] for e in body["data"]["accessLog"]["edges"]}
    assert {encode_global_id("Patient", p) for _, p in env.patients()[:3]} <= patients
    assert body["data"]["consultations"]["edges"] == []
    consultation = sorted(env.truth.consultations_of_patient[env.patients()[0][1]])[0]
    assert client.execute(
        "query($id: ID!) { node(id: $id) { id } }",
        token,
        {"id": encode_global_id("Consultation", consultation)},
    ) == {"data": {"node": None}}


# --- who may make each change: the table's sentence ----------------------------------------------


def test_each_change_refused_to_a_role_names_the_role_that_may_make_it(env, client):
    _, partner_id = _new_partner(env)
    patient_subject, patient = env.patients()[1]
    support = env.token("support-0001")
    clinician = env.token(env.clinicians()[0][0])
    refusals = {
        "grantConsent": _grant(client, clinician, partner_id, ["patient/Consultation.rs"]),
        "revokeConsent": client.execute(
            "mutation($id: ID!) { revokeConsent(id: $id) { id } }",
            support,
            {"id": encode_global_id("Consent", uuid.uuid4())},
        ),
        "openBreakGlass": _open(client, env.token(patient_subject), patient),
    }
    expected = {
        "grantConsent": "Only a patient may do this",
        "revokeConsent": "Only a patient may do this",
        "openBreakGlass": "Only a clinician may do this",
    }
    for mutation, body in refusals.items():
        assert body["data"] == {mutation: None} or body["data"] is None
        assert [(e["message"], e["extensions"]["code"], e["path"]) for e in body["errors"]] == [
            (expected[mutation], "FORBIDDEN", [mutation])
        ]


def test_reads_without_break_glass_never_move_the_break_glass_counter(env, client):
    before = _metric(client, "gateway_break_glass_reads_total")
    for subject, _ in env.patients()[:3]:
        client.execute(LIST, env.token(subject))
    client.execute(LIST, env.token(env.clinicians()[2][0]))
    assert _metric(client, "gateway_break_glass_reads_total") == before
