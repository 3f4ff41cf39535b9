"""Partners in production: the reviewed partner operations (``apps/partners``), sent by hash to a
gateway configured as ``gateway serve`` runs it (the repository's manifest, free-form documents
for developer accounts only), each served by its compiled plan (checked from the gateway's
count of executors, request by request).

For every token scope set x consent scope set (``test_partner_scopes.py``'s 56 combinations),
every partner operation returns exactly the consented patient's rows, with only the fields both
the token and the consent allow (the expected response built from the database read as
superuser and README's role table, not from the policy table), a FORBIDDEN error at the path of
every field withheld, and no other patient's ID anywhere. After the patient revokes the consent,
the partner's next request shows nothing of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from graphql import FieldNode, parse

from gateway.authz.exit_check import ExitCheck, ExitQuestions
from tests.support.actors import Grants, gid, new_partner, partner_token
from tests.support.database import as_admin
from tests.support.executors import app_manifest_gateway, send_operation
from tests.support.json_values import all_strings
from tests.support.sabotage import sabotaged_gateway, unfiltered
from tests.test_partner_scopes import (
    COMBINATIONS,
    CONSENTS,
    Expected,
    _name,
    assert_exactly,
    partner_world,
)

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "apps" / "manifest.json"
OPERATIONS = {o["name"]: o for o in json.loads(MANIFEST.read_text())["operations"]}
# The partner's reads (its one mutation, RedeemConsentCode, is the consent page's: tested in
# tests/test_consent_page.py).
PARTNER_OPERATIONS = sorted(
    n for n, o in OPERATIONS.items() if o["roles"] == ["partner"] and o["type"] == "query"
)


def _fields(operation: str, path: list[str]) -> list[str]:
    """The fields an operation of the manifest asks for at ``path`` (fragments expanded), in its
    order: the expected responses follow the operations as reviewed, not a copy of them."""
    document = parse(OPERATIONS[operation]["body"])
    fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}
    selection = next(d for d in document.definitions if d.kind == "operation_definition")

    def names(selection_set) -> list[FieldNode]:
        found = []
        for node in selection_set.selections:
            if node.kind == "fragment_spread":
                found += names(fragments[node.name.value].selection_set)
            else:
                found.append(node)
        return found

    level = selection.selection_set
    for key in path:
        level = next(n for n in names(level) if n.name.value == key).selection_set
    return [node.name.value for node in names(level)]


CONSULTATION = _fields("PartnerConsultation", ["consultation"])
RECORDING = _fields("PartnerRecording", ["recording"])
PATIENT = _fields("PartnerPatient", ["patient"])


@pytest.fixture(scope="module")
def production(env):
    """A gateway as production runs it, with the repository's manifest."""
    with app_manifest_gateway(env) as client:
        yield client


@pytest.fixture(scope="module")
def world(env):
    yield from partner_world(env)


@pytest.fixture(scope="module")
def clinicians(env) -> dict:
    rows = as_admin(
        env, lambda c: c.fetch("select id, display_name, specialty from data.clinicians")
    )
    return {row["id"]: row for row in rows}


send = send_operation


def _expected(world, clinicians, effective: frozenset[str], name: str) -> Expected:
    expected = Expected(world, effective)
    expected.nested["clinician"] = lambda pk: {
        "id": gid("Clinician", pk),
        "displayName": clinicians[pk]["display_name"],
        "specialty": clinicians[pk]["specialty"],
    }
    if name == "PartnerConsultationsWithPatients":
        expected.nested["patient"] = PATIENT
    if name == "PartnerConsultationsWithRecordings":
        expected.nested["recordings"] = RECORDING
    return expected


def _page(expected: Expected, world, fields: list[str]) -> dict:
    rows = (
        world["truth"]["consultations"] if "patient/Consultation.rs" in expected.effective else []
    )
    return {
        "consultations": {
            "edges": [
                {
                    "cursor": ...,
                    "node": expected.consultation(
                        row, ("consultations", "edges", i, "node"), fields
                    ),
                }
                for i, row in enumerate(rows)
            ],
            "pageInfo": {"hasNextPage": False, "endCursor": ...},
        }
    }


def _without_cursors(data: Any) -> Any:
    """Cursors are opaque: each one is checked to be a non-empty string, then set aside."""
    page = (data or {}).get("consultations")
    if page is None:
        return data
    for edge in page["edges"]:
        assert isinstance(edge["cursor"], str) and edge["cursor"]
        edge["cursor"] = ...
    end = page["pageInfo"]["endCursor"]
    assert end == (page["edges"][-1]["cursor"] if page["edges"] else None) or isinstance(end, str)
    page["pageInfo"]["endCursor"] = ...
    return data


def _check(env, world, subject: str, status: int, body: dict, served: list, data, expected):
    assert (status, served) == (200, ["plan"])
    assert_exactly(env, world, subject, body, data, expected, opaque=_without_cursors)


@pytest.mark.parametrize(
    ("token_scopes", "consent_scopes"),
    COMBINATIONS,
    ids=[f"token={_name(t)}-consent={_name(c)}" for t, c in COMBINATIONS],
)
def test_each_partner_operation_returns_only_what_both_token_and_consent_allow(
    env, production, world, clinicians, token_scopes, consent_scopes
):
    subject = world["partners"][consent_scopes]
    token = partner_token(env, subject, token_scopes)
    effective = token_scopes & consent_scopes
    consultation, recording = world["consultation"], world["recording"]
    pages = {
        "PartnerConsultations": CONSULTATION,
        "PartnerConsultationsWithPatients": [*CONSULTATION, "patient"],
        "PartnerConsultationsWithRecordings": [*CONSULTATION, "recordings"],
    }
    for name, fields in pages.items():
        expected = _expected(world, clinicians, effective, name)
        data = _page(expected, world, fields)
        status, body, served = send(production, name, token, {"first": 20})
        _check(env, world, subject, status, body, served, data, expected)

    expected = _expected(world, clinicians, effective, "PartnerConsultation")
    data = {"consultation": expected.consultation(consultation, ("consultation",), CONSULTATION)}
    result = send(
        production, "PartnerConsultation", token, {"id": gid("Consultation", consultation["id"])}
    )
    _check(env, world, subject, *result, data, expected)

    expected = _expected(world, clinicians, effective, "PartnerRecording")
    data = {"recording": expected.recording(recording, ("recording",), RECORDING)}
    result = send(production, "PartnerRecording", token, {"id": gid("Recording", recording["id"])})
    _check(env, world, subject, *result, data, expected)

    expected = _expected(world, clinicians, effective, "PartnerPatient")
    data = {"patient": expected.patient_object(("patient",), PATIENT)}
    result = send(production, "PartnerPatient", token, {"id": gid("Patient", world["patient"])})
    _check(env, world, subject, *result, data, expected)


def test_after_the_patient_revokes_the_next_request_shows_nothing_of_them(env, production, world):
    consent_scopes = max(CONSENTS, key=len)
    patient = world["patient"]
    subject, partner = new_partner(env, "revoked")
    grants = Grants(env)
    try:
        consent = grants.consent(patient, partner, consent_scopes)
        token = partner_token(env, subject)
        ids = {
            "PartnerConsultation": {"id": gid("Consultation", world["consultation"]["id"])},
            "PartnerRecording": {"id": gid("Recording", world["recording"]["id"])},
            "PartnerPatient": {"id": gid("Patient", patient)},
        }
        before = send(production, "PartnerConsultationsWithRecordings", token, {"first": 20})
        assert len(before[1]["data"]["consultations"]["edges"]) == len(
            world["truth"]["consultations"]
        )
        for name, variables in ids.items():
            assert None not in send(production, name, token, variables)[1]["data"].values()
        grants.revoke(consent)
        for name in ("PartnerConsultations", "PartnerConsultationsWithRecordings"):
            status, body, served = send(production, name, token, {"first": 20})
            assert (status, served) == (200, ["plan"])
            assert body == {
                "data": {
                    "consultations": {
                        "edges": [],
                        "pageInfo": {"hasNextPage": False, "endCursor": None},
                    }
                }
            }
        for name, variables in ids.items():
            status, body, served = send(production, name, token, variables)
            assert (status, served) == (200, ["plan"])
            assert body == {"data": {name.removeprefix("Partner").lower(): None}}
    finally:
        grants.close()


# --- the partner operations with layers taken away ------------------------------------------------

DATA_OPERATIONS = [name for name in PARTNER_OPERATIONS if name != "PartnerMe"]


@pytest.mark.parametrize("layers", ["every loader unfiltered", "layer 1 alone"])
def test_with_layers_taken_away_no_partner_operation_shows_another_patient(
    env, world, monkeypatch, layers
):
    """The attack a "software error" makes: every loader statement loses its WHERE and runs as a
    superuser (row-level security gone); for "layer 1 alone" the exit check is switched off too.
    A fully scoped, consented partner sends every partner operation by hash, with the IDs of
    other patients' rows too: no other patient's ID reaches it, and each request is served by
    its plan."""
    if layers == "layer 1 alone":
        monkeypatch.setattr(ExitCheck, "questions", lambda self, principal, ledger: ExitQuestions())
    subject = world["partners"][max(CONSENTS, key=len)]
    token = partner_token(env, subject)
    victim = next(p for _, p in env.patients() if p != world["patient"])
    theirs = sorted(env.truth.consultations_of_patient[victim])[0]
    their_recording = sorted(env.truth.recordings_of_patient[victim])[0]
    variables = {
        "PartnerConsultation": {"id": gid("Consultation", theirs)},
        "PartnerRecording": {"id": gid("Recording", their_recording)},
        "PartnerPatient": {"id": gid("Patient", victim)},
    }
    foreign = env.truth.global_ids_not_of(world["patient"])
    with sabotaged_gateway(env, "compiled", MANIFEST) as (client, database):
        database.broken.update(unfiltered())
        for name in DATA_OPERATIONS:
            status, body, served = send(client, name, token, variables.get(name, {"first": 100}))
            assert served == ["plan"], name
            assert status == 200, (name, body)
            assert [s for s in all_strings(body) if any(f in s for f in foreign)] == [], name
        assert sum(database.calls.values()) > 0  # the broken statements did run
