"""The ledger: what a request handed out, decided and was told, written only through ``Ledger``;
what the disclosure step reads once it has sealed it."""

from __future__ import annotations

import uuid

from gateway.ledger import Ledger

PATIENT = uuid.uuid4()


def test_a_break_glass_reason_is_kept_when_rows_of_the_same_patient_follow_without_one():
    """A clinician who conducted one of a patient's consultations and opened break-glass for the
    rest reads both kinds of row: the patient's audit event carries the reason, whatever the
    order the rows come in."""
    for order in (
        (("c1", "Unconscious on arrival"), ("c2", None)),
        (("c2", None), ("c1", "Unconscious on arrival")),
    ):
        ledger = Ledger()
        for key, reason in order:
            ledger.record_object("Consultation", key, PATIENT, reason)
        assert ledger.break_glass == {PATIENT: "Unconscious on arrival"}
        assert sorted(ledger.objects) == [
            ("Consultation", "c1", PATIENT),
            ("Consultation", "c2", PATIENT),
        ]


def test_a_row_without_an_owner_records_no_break_glass_reason():
    ledger = Ledger()
    ledger.record_object("Clinician", "d1", None, "Unconscious on arrival")
    assert ledger.break_glass == {}


def test_once_sealed_a_ledger_decides_as_before_and_records_nothing_more():
    """The disclosure step seals the ledger when it starts: work a bubbling error left in the
    background may still ask for decisions, and gets them, but nothing it does reaches the
    audit trail after the step has read it."""
    ledger = Ledger()
    assert ledger.record_field("Consultation", "c1", PATIENT, "summary", None) is True
    ledger.seal()
    assert ledger.record_field("Consultation", "c2", PATIENT, "summary", None) is True
    assert ledger.record_field("Consultation", "c2", PATIENT, "reason", "denied") is False
    ledger.record_object("Consultation", "c2", PATIENT, "Unconscious on arrival")
    assert ledger.reads == [("Consultation", "c1", PATIENT, "summary")]
    assert ledger.denials == []
    assert ledger.objects == []
    assert ledger.break_glass == {}


def test_a_ledger_collects_explanations_only_when_asked_to():
    assert Ledger().explanations is None
    assert Ledger(explaining=True).explanations == []


def test_a_field_read_is_audited_even_when_no_loader_recorded_its_object():
    """The audit events are built from reads as well as from rows: a field disclosed of an object
    no loader recorded (a row that came another way) still reaches its owner's event, with its
    object, instead of being lost or failing the request."""
    from gateway.audit.events import events_from_ledger
    from gateway.identity import Principal, Role

    caller = Principal("iss", "sub", Role.CLINICIAN, uuid.uuid4(), expires_at=0)
    ledger = Ledger()
    ledger.record_field("Consultation", "c9", PATIENT, "reason", None)
    ledger.record_field("Consultation", "c9", PATIENT, "status", None)
    events = events_from_ledger(caller, "r", ledger, kind="disclosure")
    assert [(e["kind"], e["patient_id"], e["objects"]) for e in events] == [
        (
            "disclosure",
            PATIENT,
            [{"type": "Consultation", "fields": ["reason", "status"], "ids": ["c9"]}],
        )
    ]
