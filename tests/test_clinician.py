"""A clinician sees the consultations they conducted and nothing else."""

from __future__ import annotations

from gateway.ids import decode_global_id, encode_global_id
from tests.support.json_values import all_strings

LIST = """{ consultations(first: 100) { edges { node {
    id reason clinicianNotes patient { id displayName } recordings { id }
} } } }"""


def test_clinician_lists_exactly_the_consultations_they_conducted(env, client):
    for subject, clinician in env.clinicians():
        body = client.execute(LIST, env.token(subject))
        assert "errors" not in body
        nodes = [edge["node"] for edge in body["data"]["consultations"]["edges"]]
        assert {decode_global_id(n["id"])[1] for n in nodes} == (
            env.truth.consultations_of_clinician[clinician]
        )
        allowed = {
            encode_global_id("Consultation", pk)
            for pk in env.truth.consultations_of_clinician[clinician]
        }
        allowed |= {
            encode_global_id("Patient", pk) for pk in env.truth.patients_of_clinician[clinician]
        }
        allowed |= {
            encode_global_id("Recording", r)
            for pk in env.truth.consultations_of_clinician[clinician]
            for r in env.truth.recordings_of_consultation[pk]
        }
        every_id = {
            s
            for s in all_strings(body)
            if s.startswith(("Q29uc3VsdGF0aW9u", "UGF0aWVudD", "UmVjb3JkaW5n"))
        }
        assert every_id <= allowed


def test_clinician_gets_null_for_a_consultation_they_did_not_conduct(env, client):
    (subject, clinician), (_, other) = env.clinicians()[0], env.clinicians()[1]
    foreign = sorted(
        env.truth.consultations_of_clinician[other]
        - env.truth.consultations_of_clinician[clinician]
    )[0]
    body = client.execute(
        "query($id: ID!) { consultation(id: $id) { id clinicianNotes } }",
        env.token(subject),
        {"id": encode_global_id("Consultation", foreign)},
    )
    assert body == {"data": {"consultation": None}}


def test_clinician_gets_null_for_a_patient_they_never_saw(env, client):
    for subject, clinician in env.clinicians():
        strangers = (
            set(env.truth.consultations_of_patient) - env.truth.patients_of_clinician[clinician]
        )
        for stranger in strangers:
            body = client.execute(
                "query($id: ID!) { patient(id: $id) { id displayName } }",
                env.token(subject),
                {"id": encode_global_id("Patient", stranger)},
            )
            assert body == {"data": {"patient": None}}


def test_clinician_reads_notes_of_their_own_consultations(env, client):
    subject, _clinician = env.clinicians()[0]
    body = client.execute(LIST, env.token(subject))
    notes = [e["node"]["clinicianNotes"] for e in body["data"]["consultations"]["edges"]]
    assert any(note for note in notes)
    assert "errors" not in body


def test_patient_reading_clinician_notes_gets_null_and_forbidden_at_that_path(env, client):
    subject, _ = env.patients()[0]
    body = client.execute(
        "{ consultations(first: 1) { edges { node { id reason clinicianNotes } } } }",
        env.token(subject),
    )
    node = body["data"]["consultations"]["edges"][0]["node"]
    assert node["clinicianNotes"] is None
    assert node["reason"]
    assert body["errors"] == [
        {
            "message": "Not authorized to read this field",
            "locations": [{"line": 1, "column": 54}],
            "path": ["consultations", "edges", 0, "node", "clinicianNotes"],
            "extensions": {"code": "FORBIDDEN"},
        }
    ]
