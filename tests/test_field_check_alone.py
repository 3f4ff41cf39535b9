"""Layer 1 on its own: a foreign patient's row handed to a resolver is refused by the field check.

The sabotage switches off every layer after the field check: loader statements forget their
predicates and run as a superuser (no row-level security, layers 2 and 3), and the exit check
(layer 4) answers that nothing is foreign. What a patient, a clinician or a partner then receives
of another patient's rows is only nulls and FORBIDDEN errors, decided by the field gate from the
row itself: its owner, and the grant it was (not) loaded under. Every request runs on both
executors (``tests.support.executors``): interpreted, and compiled from a trusted document sent by
hash, as production runs it.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest

from gateway.authz.exit_check import ExitCheck, ExitQuestions
from gateway.authz.field_check import check_field
from gateway.identity import Principal, Role
from gateway.ids import encode_global_id
from gateway.ledger import Denial, Ledger
from gateway.policy.table import Condition
from resolvers.consultation import Consultation
from tests.support.database import as_admin
from tests.support.executors import trusted
from tests.support.json_values import all_strings
from tests.support.sabotage import sabotaged_gateway, unfiltered, unfiltered_logs

ALL_SCOPES = {"patient/Consultation.rs", "patient/Recording.rs", "patient/Patient.rs"}


@pytest.fixture
def layer_one_only(env, executor, manifest, monkeypatch):
    monkeypatch.setattr(ExitCheck, "questions", lambda self, principal, ledger: ExitQuestions())
    with sabotaged_gateway(env, executor, manifest) as (client, database):
        database.broken.update(unfiltered())
        database.broken.update(unfiltered_logs())
        client.sabotaged = database  # for a test that breaks one statement more
        yield client


PAGE = trusted(
    "{ consultations(first: 100) { edges { node { id reason summary scheduledAt "
    "patient { id displayName } recordings { id playbackUrl } } } } }"
)
CONSULTATION_AND_PATIENT = trusted(
    "query($id: ID!) { consultation(id: $id) { id reason patient { id } } }"
)
CONSULTATION_SUMMARY = trusted(
    "query($id: ID!) { consultation(id: $id) { id summary scheduledAt } }"
)
ACCESS_LOG = trusted(
    "{ accessLog(first: 100) { edges { node { patientId kind objects { id } } } } }"
)
CONSENTS = trusted("{ consents { id active partner { id } } }")
ANSWER = trusted(
    "mutation($id: ID!) { answerConsentRequest(id: $id, approve: true) "
    "{ id scopes approved redirectTo partner { id } } }"
)


def _nodes(body):
    return [edge["node"] for edge in body["data"]["consultations"]["edges"]]


def test_a_patient_handed_every_consultation_sees_only_their_own(env, layer_one_only):
    subject, patient = env.patients()[0]
    body = layer_one_only.execute(PAGE, env.token(subject))
    # The unfiltered page holds the newest 100 of every consultation: own are theirs among them.
    newest = as_admin(
        env,
        lambda c: c.fetch(
            "select id, patient_id from data.consultations "
            "order by scheduled_at desc, id desc limit 100"
        ),
    )
    own = {encode_global_id("Consultation", r["id"]) for r in newest if r["patient_id"] == patient}
    assert own
    visible = [node for node in _nodes(body) if node is not None]
    assert {node["id"] for node in visible} == own
    assert set(all_strings(body)) & env.truth.global_ids_not_of(patient) == set()
    codes = {error["extensions"]["code"] for error in body["errors"]}
    assert codes == {"FORBIDDEN"}


def test_a_clinician_handed_a_stranger_s_consultation_reads_nothing_of_it(env, layer_one_only):
    (subject, clinician), (_, other) = env.clinicians()[0], env.clinicians()[1]
    strangers = set(env.truth.consultations_of_patient) - env.truth.patients_of_clinician[clinician]
    foreign = next(
        pk
        for pk in sorted(env.truth.consultations_of_clinician[other])
        if env.truth.owner_of[pk] in strangers
    )
    body = layer_one_only.execute(
        CONSULTATION_AND_PATIENT,
        env.token(subject),
        {"id": encode_global_id("Consultation", foreign)},
    )
    assert body["data"] == {"consultation": None}
    assert [error["path"] for error in body["errors"]] == [["consultation", "id"]]
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_a_partner_handed_a_row_loaded_under_no_consent_reads_nothing_of_it(env, layer_one_only):
    partner = next(p for p in env.principals if p["role"] == "partner")
    _, victim = env.patients()[1]
    foreign = sorted(env.truth.consultations_of_patient[victim])[0]
    token = env.token(
        partner["subject"],
        scope="patient/Consultation.rs patient/Recording.rs patient/Patient.rs",
        azp=partner["subject"],
    )
    body = layer_one_only.execute(
        CONSULTATION_SUMMARY,
        token,
        {"id": encode_global_id("Consultation", foreign)},
    )
    assert body["data"] == {"consultation": None}
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert encode_global_id("Consultation", foreign) not in set(all_strings(body))


BY_ID = {
    "Consultation": trusted("query($id: ID!) { consultation(id: $id) { id scheduledAt reason } }"),
    "Recording": trusted("query($id: ID!) { recording(id: $id) { id segmentIndex playbackUrl } }"),
    "Patient": trusted("query($id: ID!) { patient(id: $id) { id displayName } }"),
}


def _stranger_pair(env):
    """A clinician and a patient they never treated."""
    for subject, clinician in env.clinicians():
        strangers = (
            set(env.truth.consultations_of_patient) - env.truth.patients_of_clinician[clinician]
        )
        if strangers:
            return subject, sorted(strangers)[0]
    raise AssertionError("every clinician treated every patient")


@pytest.mark.parametrize(
    ("role", "type_name"),
    [
        (role, type_name)
        for role in ("patient", "clinician", "partner")
        for type_name in ("Consultation", "Recording", "Patient")
    ]
    + [("support", "Recording")],
)
def test_each_role_handed_a_foreign_object_by_id_reads_nothing_of_it(
    env, layer_one_only, role, type_name
):
    if role == "clinician":
        subject, victim = _stranger_pair(env)
        token = env.token(subject)
    elif role == "partner":
        partner = next(p for p in env.principals if p["role"] == "partner")
        victim = env.patients()[1][1]
        token = env.token(partner["subject"], scope=" ".join(sorted(ALL_SCOPES)))
    elif role == "support":
        victim = env.patients()[1][1]
        token = env.token("support-0001")
    else:
        subject, _ = env.patients()[0]
        victim = env.patients()[1][1]
        token = env.token(subject)
    pk = {
        "Consultation": lambda: sorted(env.truth.consultations_of_patient[victim])[0],
        "Recording": lambda: sorted(env.truth.recordings_of_patient[victim])[0],
        "Patient": lambda: victim,
    }[type_name]()
    body = layer_one_only.execute(BY_ID[type_name], token, {"id": encode_global_id(type_name, pk)})
    assert list(body["data"].values()) == [None]
    # Refused by the field check (FORBIDDEN), or not even loaded (support: no row scope).
    assert {error["extensions"]["code"] for error in body.get("errors", [])} <= {"FORBIDDEN"}
    assert encode_global_id(type_name, pk) not in set(all_strings(body))


def test_a_patient_handed_every_access_event_reads_only_those_about_themselves(
    env, client, layer_one_only
):
    (subject, patient), (other_subject, _) = env.patients()[4], env.patients()[5]
    for who in (subject, other_subject):  # events about both patients
        client.execute("{ consultations { edges { node { id } } } }", env.token(who))
    body = layer_one_only.post(ACCESS_LOG, env.token(subject)).json()
    nodes = [edge["node"] for edge in body["data"]["accessLog"]["edges"]]
    own = encode_global_id("Patient", patient)
    assert {node["patientId"] for node in nodes} == {own, None}
    for node in nodes:
        if node["patientId"] is None:
            assert node == {"patientId": None, "kind": None, "objects": None}
    assert {error["extensions"]["code"] for error in body["errors"]} == {"FORBIDDEN"}
    assert set(all_strings(body)) & env.truth.global_ids_not_of(patient) == set()


def test_a_patient_handed_every_consent_reads_only_their_own_and_each_refusal_says_why(
    env, layer_one_only
):
    """Consent.active keeps Strawberry's path (a resolver without Info), Consent.partner the fast
    resolver path, the rest the fast attribute path: each refusal carries the same message."""
    subject, patient = env.patients()[9]
    partner = uuid.uuid4()

    async def consents(connection):
        await connection.execute("insert into data.partners values ($1, 'Consent probe')", partner)
        for owner in (patient, env.patients()[10][1]):
            await connection.execute(
                "insert into data.consents (id, patient_id, partner_id, scopes, expires_at) "
                "values ($1, $2, $3, '{patient/Patient.rs}', now() + interval '1 day')",
                uuid.uuid4(),
                owner,
                partner,
            )
        return await connection.fetch("select id, patient_id from data.consents")

    rows = as_admin(env, consents)
    body = layer_one_only.post(CONSENTS, env.token(subject)).json()
    own = {encode_global_id("Consent", r["id"]) for r in rows if r["patient_id"] == patient}
    listed = body["data"]["consents"]
    assert len(listed) == len(rows)
    assert {c["id"] for c in listed if c["id"] is not None} == own
    for item in listed:
        if item["id"] is None:
            assert item == {"id": None, "active": None, "partner": None}
    foreign = len(rows) - len(own)
    refused = [(e["path"][-1], e["message"]) for e in body["errors"]]
    assert sorted(refused) == sorted(
        (field, "Not authorized to read this field")
        for field in ("id", "active", "partner")
        for _ in range(foreign)
    )


def test_a_patient_handed_another_patients_consent_request_reads_none_of_it(env, layer_one_only):
    """answer_consent_request without its guard (the superuser's row of whichever request was
    named): the field gate alone refuses every field of another patient's request."""
    from gateway.data import queries
    from tests.support.sabotage import broken, keeping

    subject, _ = env.patients()[9]
    owner = env.patients()[10][1]
    partner = uuid.uuid4()

    async def request(connection):
        await connection.execute("insert into data.partners values ($1, 'Request probe')", partner)
        return await connection.fetchval(
            "insert into data.consent_requests (id, patient_id, partner_id, scopes, "
            "redirect_uri, state, consent_expires_at, valid_until) values (gen_random_uuid(), "
            "$1, $2, '{patient/Patient.rs}', 'https://probe.example/back', 'secret-state', "
            "now() + interval '1 day', now() + interval '15 minutes') returning id",
            owner,
            partner,
        )

    pk = as_admin(env, request)
    statement = queries.ANSWER_CONSENT_REQUEST
    with broken(
        layer_one_only.sabotaged,
        statement,
        keeping("select * from data.consent_requests where id = $1", 3),
    ):
        body = layer_one_only.post(
            ANSWER, env.token(subject), {"id": encode_global_id("ConsentRequest", pk)}
        ).json()
    assert layer_one_only.sabotaged.calls.get(statement, 0) == 1  # the broken statement served
    fields = ("id", "scopes", "approved", "redirectTo", "partner")
    assert body["data"] == {"answerConsentRequest": dict.fromkeys(fields)}
    assert sorted((e["path"], e["message"]) for e in body["errors"]) == sorted(
        (["answerConsentRequest", field], "Not authorized to read this field") for field in fields
    )
    assert "secret-state" not in str(body) and str(pk) not in str(body)


class _Context:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.ledger = Ledger()


def _row(owner: UUID, clinician: UUID, granted: str | None) -> dict:
    return {
        "id": UUID(int=1),
        "patient_id": owner,
        "clinician_id": clinician,
        "scheduled_at": None,
        "status": "COMPLETED",
        "mode": "AUDIO",
        "reason": "r",
        "summary": "s",
        "clinician_notes": "n",
        "consent_scopes": None,
        "break_glass_reason": None,
        "granted": granted,
    }


class _Path:
    def as_list(self) -> list:
        return ["consultation", "reason"]


@pytest.mark.parametrize(
    ("role", "granted", "owner_is_actor", "allowed"),
    [
        (Role.PATIENT, "own", True, True),
        (Role.PATIENT, "own", False, False),  # a forged grant does not make a row one's own
        (Role.PATIENT, None, False, False),
        (Role.CLINICIAN, "conducted", False, True),
        (Role.CLINICIAN, "break-glass", False, True),
        (Role.CLINICIAN, None, False, False),
        (Role.CLINICIAN, "consent", False, False),
        (Role.SUPPORT, None, False, False),  # support is never granted reason
    ],
)
def test_the_field_check_judges_the_row_it_is_handed(role, granted, owner_is_actor, allowed):
    actor = UUID(int=7)
    owner = actor if owner_is_actor else UUID(int=8)
    principal = Principal("iss", "sub", role, actor, expires_at=0)
    context = _Context(principal)
    consultation = Consultation.from_row(_row(owner, UUID(int=9), granted))
    assert check_field(context, consultation, "Consultation", "reason", _Path()) is allowed
    if allowed:
        assert context.ledger.reads == [("Consultation", UUID(int=1), owner, "reason")]
    else:
        assert context.ledger.reads == []
        assert [d.field for d in context.ledger.denials] == ["reason"]


# --- why: the exact rule or reason of each decision, as denials, metrics, the audit trail and
# `gateway explain` show it ---------------------------------------------------------------------

ACTOR, OTHER, CLINICIAN = UUID(int=7), UUID(int=8), UUID(int=9)
CONSULTATION, RECORDING = "patient/Consultation.rs", "patient/Recording.rs"


class _ExplainingContext:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.ledger = Ledger(explaining=True)


class _FieldPath:
    def as_list(self) -> list:
        return ["consultation", "field"]


def _consultation(owner, clinician=CLINICIAN, granted=None, consent_scopes=None):
    return Consultation.from_row(
        {
            "id": UUID(int=1),
            "patient_id": owner,
            "clinician_id": clinician,
            "scheduled_at": None,
            "status": "COMPLETED",
            "mode": "AUDIO",
            "reason": "r",
            "summary": "s",
            "clinician_notes": "n",
            "consent_scopes": consent_scopes,
            "break_glass_reason": None,
            "granted": granted,
        }
    )


CASES = [
    # (role, token scopes, row, field, allowed rule or None, denial reason or None)
    (Role.PATIENT, (), _consultation(ACTOR, granted="own"), "reason",
     "Consultation.reason@patient (yes)", None),
    (Role.PATIENT, (), _consultation(OTHER, granted="own"), "reason",
     None, "Consultation.reason@patient (not the caller's own row)"),
    (Role.PATIENT, (), _consultation(ACTOR, granted="own"), "clinicianNotes",
     None, "not granted to patient (default deny)"),
    (Role.CLINICIAN, (), _consultation(OTHER, clinician=ACTOR, granted="conducted"),
     "clinicianNotes", "Consultation.clinicianNotes@clinician (if conducted)", None),
    (Role.CLINICIAN, (), _consultation(OTHER, granted="break-glass"), "clinicianNotes",
     None, "Consultation.clinicianNotes@clinician (not the conducting clinician)"),
    (Role.CLINICIAN, (), _consultation(OTHER, granted=None), "reason",
     None, "Consultation.reason@clinician (row not under care or break-glass)"),
    (Role.SUPPORT, (), _consultation(OTHER, granted="everyone"), "scheduledAt",
     "Consultation.scheduledAt@support (yes)", None),
    (Role.SUPPORT, (), _consultation(OTHER, granted="everyone"), "reason",
     None, "not granted to support (default deny)"),
    (Role.PARTNER, (CONSULTATION,), _consultation(OTHER, granted="consent",
     consent_scopes=[CONSULTATION]), "summary",
     "Consultation.summary@partner (scope patient/Consultation.rs)", None),
    (Role.PARTNER, (CONSULTATION,), _consultation(OTHER, granted=None), "summary",
     None, "Consultation.summary@partner (row not under a consent)"),
    (Role.PARTNER, (), _consultation(OTHER, granted="consent", consent_scopes=[CONSULTATION]),
     "summary", None, "Consultation.summary@partner (token lacks patient/Consultation.rs)"),
    (Role.PARTNER, (CONSULTATION,), _consultation(OTHER, granted="consent",
     consent_scopes=[RECORDING]), "summary",
     None, "Consultation.summary@partner (consent lacks patient/Consultation.rs)"),
]  # fmt: skip


@pytest.mark.parametrize(("role", "scopes", "row", "field", "allowed", "denied"), CASES)
def test_the_field_check_records_the_exact_rule_or_reason_of_each_decision(
    role, scopes, row, field, allowed, denied
):
    principal = Principal("iss", "sub", role, ACTOR, expires_at=0, scopes=frozenset(scopes))
    context = _ExplainingContext(principal)
    assert check_field(context, row, "Consultation", field, _FieldPath()) is (denied is None)
    ledger = context.ledger
    decision = "allowed" if denied is None else "denied"
    assert ledger.explanations == [
        ("consultation.field", "Consultation", field, decision, allowed or denied)
    ]
    if denied is None:
        assert (ledger.reads, ledger.denials) == ([("Consultation", row.pk, row.owner, field)], [])
    else:
        assert ledger.reads == []
        assert ledger.denials == [Denial("Consultation", row.pk, row.owner, field, denied)]


@pytest.mark.parametrize(
    ("consent_scopes", "denied"),
    [
        ([RECORDING], None),
        ([CONSULTATION], "Recording.segmentIndex@partner (consent lacks patient/Recording.rs)"),
        (None, "Recording.segmentIndex@partner (row not under a consent)"),
    ],
)
def test_a_partners_recording_needs_the_recording_scope_in_its_consent(consent_scopes, denied):
    from resolvers.recording import Recording

    recording = Recording.from_row(
        {
            "id": UUID(int=2),
            "consent_scopes": consent_scopes,
            "granted": "consent" if consent_scopes else None,
            "patient_id": OTHER,
            "consultation_id": UUID(int=1),
            "segment_index": 0,
            "mode": "AUDIO",
            "started_at": None,
            "duration_seconds": 1,
            "content_type": "audio/ogg",
            "byte_size": 1,
        }
    )
    principal = Principal(
        "iss", "sub", Role.PARTNER, ACTOR, expires_at=0, scopes=frozenset({CONSULTATION, RECORDING})
    )
    context = _ExplainingContext(principal)
    assert check_field(context, recording, "Recording", "segmentIndex", _FieldPath()) is (
        denied is None
    )
    assert [d.rule for d in context.ledger.denials] == ([denied] if denied else [])


def test_a_condition_of_scope_and_care_describes_both():
    assert Condition(CONSULTATION, conducted=True).describe() == (
        "scope patient/Consultation.rs, if conducted"
    )
    assert Condition().describe() == "yes"


@pytest.mark.parametrize(
    ("consent_scopes", "field", "denied"),
    [
        (["patient/Patient.rs"], "displayName", None),
        ([CONSULTATION], "displayName",
         "Patient.displayName@partner (consent lacks patient/Patient.rs)"),
        ([CONSULTATION], "consultations", None),
        (["patient/Patient.rs"], "consultations",
         "Patient.consultations@partner (consent lacks patient/Consultation.rs)"),
    ],
)  # fmt: skip
def test_a_partners_patient_record_needs_the_scope_of_each_field_in_its_consent(
    consent_scopes, field, denied
):
    from resolvers.patient import Patient

    patient = Patient.from_row(
        {
            "id": OTHER,
            "consent_scopes": consent_scopes,
            "granted": "consent",
            "display_name": "P",
            "birth_date": None,
        }
    )
    scopes = frozenset({CONSULTATION, "patient/Patient.rs"})
    principal = Principal("iss", "sub", Role.PARTNER, ACTOR, expires_at=0, scopes=scopes)
    context = _ExplainingContext(principal)
    assert check_field(context, patient, "Patient", field, _FieldPath()) is (denied is None)
    assert [d.rule for d in context.ledger.denials] == ([denied] if denied else [])
