"""Layer 2 on its own: each api.* function, called as a superuser (so no row-level security
filters anything), returns exactly the rows, and the grant of each, that the policy gives its
caller, for every kind of caller: each patient, each clinician (conducting, under an active, a
revoked and an expired break-glass grant), partners under every kind of consent with every token
scope set, support, an auditor and an unknown role. The expectation is computed in Python from the
same rows read as a superuser (tests/support/visibility_oracle.py), never from the functions
themselves.
"""

from __future__ import annotations

import json

import pytest

from gateway.ids import encode_global_id
from tests.support.actors import Grants, new_clinician
from tests.support.database import as_admin
from tests.support.visibility_oracle import (
    CONSULTATION,
    PATIENT,
    RECORDING,
    Caller,
    Snapshot,
    callers,
    make_world,
)

NEEDS = (CONSULTATION, RECORDING, PATIENT)


def _fetch(env, sql, *args):
    return as_admin(env, lambda connection: connection.fetch(sql, *args))


@pytest.fixture(scope="module")
def world(env, client):
    (target_subject, target), (other_subject, other) = env.patients()[5], env.patients()[6]
    made = as_admin(env, lambda c: make_world(c, target, other))
    for subject in (target_subject, other_subject):  # access events of two patients
        client.execute("{ consultations { edges { node { id reason } } } }", env.token(subject))
    # An emergency read of the other patient's record: an event by someone else, with a reason.
    grants = Grants(env)
    clinician_subject, clinician = new_clinician(env, "predicates")
    grants.open_break_glass(clinician, other)
    read = client.execute(
        "query($id: ID!) { patient(id: $id) { displayName } }",
        env.token(clinician_subject),
        {"id": encode_global_id("Patient", other)},
    )
    assert read["data"]["patient"]["displayName"], read
    yield made
    grants.close()


@pytest.fixture(scope="module")
def snapshot(env, world):
    return as_admin(env, Snapshot.read)


def _args(caller: Caller) -> tuple:
    return caller.role, caller.actor, list(caller.scopes)


def _grant_of(row) -> tuple:
    scopes = tuple(row["consent_scopes"]) if row["consent_scopes"] is not None else None
    return row["granted"], scopes, row["break_glass_reason"]


def _check(expected, row, label) -> None:
    assert expected is not None, f"{label}: a row the policy does not grant"
    granted, scopes, reasons = expected
    assert _grant_of(row)[:2] == (granted, scopes), label
    if reasons:
        assert row["break_glass_reason"] in reasons, label
    else:
        assert row["break_glass_reason"] is None, label


def test_consultations_by_id_returns_each_visible_consultation_with_its_grant_and_no_other(
    env, world, snapshot
):
    ids = [c["id"] for c in snapshot.consultations]
    for caller in callers(env, world):
        rows = _fetch(
            env,
            "select (x.consultation).id, (x.consultation).patient_id, x.* "
            "from api.consultations_by_id($1, $2, $3, $4) x",
            *_args(caller),
            ids,
        )
        expected = {
            c["id"]: snapshot.grant(caller, c["patient_id"], c["clinician_id"], CONSULTATION)
            for c in snapshot.consultations
        }
        got = {row["id"]: row for row in rows}
        assert set(got) == {k for k, v in expected.items() if v is not None}, str(caller)
        for pk, row in got.items():
            _check(expected[pk], row, f"{caller} {pk}")


def test_consultations_by_patient_returns_only_visible_consultations_of_the_asked_patients(
    env, world, snapshot
):
    for caller in callers(env, world):
        for patient in (world.target, world.other):
            rows = _fetch(
                env,
                "select (x.consultation).id, (x.consultation).patient_id, x.* "
                "from api.consultations_by_patient($1, $2, $3, $4) x",
                *_args(caller),
                [patient],
            )
            expected = {
                c["id"]: snapshot.grant(caller, c["patient_id"], c["clinician_id"], CONSULTATION)
                for c in snapshot.consultations
                if c["patient_id"] == patient
            }
            got = {row["id"]: row for row in rows}
            assert set(got) == {k for k, v in expected.items() if v is not None}, str(caller)
            for pk, row in got.items():
                _check(expected[pk], row, f"{caller} {pk}")


def test_the_consultation_page_lists_exactly_the_callers_list_newest_first(env, world, snapshot):
    for caller in callers(env, world):
        rows = _fetch(
            env,
            "select (x.consultation).id from api.consultations_page($1, $2, $3, 100000, "
            "null, null) x",
            *_args(caller),
        )
        assert [row["id"] for row in rows] == snapshot.page(caller), str(caller)


@pytest.mark.parametrize("function", ["recordings_by_consultation", "recordings_by_id"])
def test_recording_functions_return_each_visible_recording_with_its_grant_and_no_other(
    env, world, snapshot, function
):
    keys = [
        r["consultation_id" if function == "recordings_by_consultation" else "id"]
        for r in snapshot.recordings
    ]
    for caller in callers(env, world):
        rows = _fetch(
            env,
            f"select (x.recording).id, x.* from api.{function}($1, $2, $3, $4) x",
            *_args(caller),
            sorted(
                set(keys),
            ),
        )
        expected = {}
        for r in snapshot.recordings:
            consultation = snapshot.consultation[r["consultation_id"]]
            expected[r["id"]] = snapshot.grant(
                caller, consultation["patient_id"], consultation["clinician_id"], RECORDING
            )
        got = {row["id"]: row for row in rows}
        assert set(got) == {k for k, v in expected.items() if v is not None}, str(caller)
        for pk, row in got.items():
            _check(expected[pk], row, f"{caller} {pk}")


def test_patients_by_id_returns_each_visible_patient_with_its_grant_and_no_other(
    env, world, snapshot
):
    ids = [p["id"] for p in snapshot.patients]
    for caller in callers(env, world):
        rows = _fetch(
            env,
            "select (x.patient).id, x.* from api.patients_by_id($1, $2, $3, $4) x",
            *_args(caller),
            ids,
        )
        expected = {pk: snapshot.patient_grant(caller, pk) for pk in ids}
        got = {row["id"]: row for row in rows}
        assert set(got) == {k for k, v in expected.items() if v is not None}, str(caller)
        for pk, row in got.items():
            _check(expected[pk], row, f"{caller} {pk}")


@pytest.mark.parametrize("needs", NEEDS)
def test_authorized_patients_answers_exactly_the_patients_the_caller_may_hold(
    env, world, snapshot, needs
):
    ids = [p["id"] for p in snapshot.patients]
    for caller in callers(env, world):
        rows = _fetch(
            env,
            "select x from api.authorized_patients($1, $2, $3, $4, $5) x",
            *_args(caller),
            needs,
            ids,
        )
        assert {row["x"] for row in rows} == snapshot.authorized(caller, needs), str(caller)


@pytest.mark.parametrize(
    ("by_others", "emergency"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_the_access_log_page_holds_exactly_the_callers_events(
    env, world, snapshot, by_others, emergency
):
    """Each view of the log (everything, others' accesses, emergency ones, both) has a
    statement of its own: each holds the caller's events only."""
    assert len({e["patient_id"] for e in snapshot.events if e["seq"] is not None}) >= 2
    assert any(e["break_glass_reason"] and e["role"] != "patient" for e in snapshot.events)
    for caller in callers(env, world):
        rows = _fetch(
            env,
            "select seq from api.access_events_page($1, $2, $3, 1000000, null, $4, $5)",
            *_args(caller),
            by_others,
            emergency,
        )
        expected = snapshot.access_log(caller, by_others=by_others, emergency=emergency)
        assert {row["seq"] for row in rows} == expected, str(caller)


def test_a_patients_consent_list_holds_exactly_their_own_consents(env, world, snapshot):
    for caller in callers(env, world):
        rows = _fetch(
            env, "select (x.consent).id from api.consents_of($1, $2) x", caller.role, caller.actor
        )
        assert {row["id"] for row in rows} == snapshot.consents_of(caller), str(caller)


def test_a_patient_cannot_revoke_another_patients_consent_even_without_row_security(
    env, world, snapshot
):
    consent = snapshot.consent(world.partners["all"], world.target)
    who = json.dumps({"request_id": "r", "issuer": "i", "subject": "s", "client_id": None})

    async def revoke(connection):
        transaction = connection.transaction()
        await transaction.start()
        try:
            returned = await connection.fetch(
                "select id from api.revoke_consent($1::jsonb, 'patient', $2, $3)",
                who,
                world.other,
                consent["id"],
            )
            still = await connection.fetchval(
                "select revoked_at is null from data.consents where id = $1", consent["id"]
            )
            return returned, still
        finally:
            await transaction.rollback()

    returned, still_active = as_admin(env, revoke)
    assert returned == [] and still_active is True
