"""Layer 1 on its own: a foreign patient's row handed to a resolver is refused by the field check.

The sabotage switches off every layer after the field check: loader statements forget their
predicates and run as a superuser (no row-level security, layers 2 and 3), and the exit check
(layer 4) answers that nothing is foreign. What a patient, a clinician or a partner then receives
of another patient's rows is only nulls and FORBIDDEN errors, decided by the field check from the
row itself: its owner, and the grant it was (not) loaded under.
"""

from __future__ import annotations

from uuid import UUID

import pytest

from gateway.authz.exit_check import ExitCheck
from gateway.authz.field_check import check_field
from gateway.identity import Principal, Role
from gateway.ids import encode_global_id
from gateway.ledger import Ledger
from resolvers.consultation import Consultation
from tests.sabotage import sabotaged_gateway, unfiltered
from tests.support import all_strings


@pytest.fixture
def layer_one_only(env, monkeypatch):
    async def nothing_foreign(self, principal, ledger):
        return set()

    monkeypatch.setattr(ExitCheck, "foreign_owners", nothing_foreign)
    with sabotaged_gateway(env) as (client, database):
        database.broken.update(unfiltered())
        yield client


PAGE = (
    "{ consultations(first: 100) { edges { node { id reason summary scheduledAt "
    "patient { id displayName } recordings { id playbackUrl } } } } }"
)


def _nodes(body):
    return [edge["node"] for edge in body["data"]["consultations"]["edges"]]


def test_a_patient_handed_every_consultation_sees_only_their_own(env, layer_one_only):
    subject, patient = env.patients()[0]
    body = layer_one_only.execute(PAGE, env.token(subject))
    own = {
        encode_global_id("Consultation", pk) for pk in env.truth.consultations_of_patient[patient]
    }
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
        "query($id: ID!) { consultation(id: $id) { id reason patient { id } } }",
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
        "query($id: ID!) { consultation(id: $id) { id summary scheduledAt } }",
        token,
        {"id": encode_global_id("Consultation", foreign)},
    )
    assert body["data"] == {"consultation": None}
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert encode_global_id("Consultation", foreign) not in set(all_strings(body))


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
