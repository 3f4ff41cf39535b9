"""Second locks, each proven alone: where the gateway checks something the database also refuses
(or the reverse), a test takes the other lock away and shows this one still holds.

- The media endpoint's storage-key lock, with the database's key constraints dropped: a row that
  points at another patient's media file plays nothing (bearer and cookie requests alike), and
  nothing is disclosed or audited.
- The loaders' row scope (``Loaders._sees``), with every other layer off: a role with no row scope
  for a type gets no row of it, and the statement is never sent.
- Who may make a change of access: ``MutationPolicy`` alone (the data edge's check skipped, the
  api function replaced by one without its role guard), and the data edge's ``_require`` alone
  (``MutationPolicy`` allowing everything). The api functions' own role guards are proven alone in
  ``test_layers_alone.py``.
- Each input the gateway validates and a constraint of the database also bounds: the gateway's
  check with the constraint dropped, and the constraint with the gateway bypassed.

Constraints are dropped for one test at a time and put back exactly as they were
(``pg_get_constraintdef``), whatever the test's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gateway.authz.field_check import MutationPolicy
from gateway.authz.playback import PlaybackSigner
from gateway.data import queries
from gateway.data.changes import AccessChanges
from gateway.ids import encode_global_id
from tests.support.executors import trusted
from tests.support.leak_world import REASON, admin, drop_world, make_world
from tests.support.sabotage import broken, keeping, sabotaged_gateway, unfiltered

OPEN_BREAK_GLASS = trusted(
    "mutation($p: ID!, $r: String!, $m: Int) { openBreakGlass(patientId: $p, reason: $r, "
    "minutes: $m) { id reason } }"
)
GRANT_CONSENT = trusted(
    "mutation($p: ID!, $s: [String!]!, $e: DateTime!) { grantConsent(partnerId: $p, scopes: $s, "
    "expiresAt: $e) { id scopes } }"
)
RECORDING = trusted("query($id: ID!) { recording(id: $id) { id segmentIndex } }")


@pytest.fixture(scope="module")
def world(env):
    made = make_world(env, "locks")
    yield made
    drop_world(env, made)


@pytest.fixture(scope="module")
def sabotaged(env, executor, manifest):
    with sabotaged_gateway(env, executor, manifest) as made:
        yield made


def run(env, work):
    return asyncio.run(admin(env, work))


@contextlib.contextmanager
def constraints_dropped(env, table: str, *names: str) -> Iterator[None]:
    """Drop the named constraints of ``table``; put each back as it was afterwards."""

    async def drop(connection):
        definitions = {}
        for name in names:
            definitions[name] = await connection.fetchval(
                "select pg_get_constraintdef(oid) from pg_constraint "
                "where conname = $1 and conrelid = $2::regclass",
                name,
                table,
            )
            assert definitions[name], f"no constraint {name} on {table}"
            await connection.execute(f"alter table {table} drop constraint {name}")
        return definitions

    definitions = run(env, drop)
    try:
        yield
    finally:

        async def restore(connection):
            for name, definition in definitions.items():
                await connection.execute(f"alter table {table} add constraint {name} {definition}")

        run(env, restore)


def _events(env, subject: str) -> list[str]:
    return run(
        env,
        lambda c: c.fetch(
            "select kind from data.access_events where subject = $1 order by seq", subject
        ),
    )


# --- the media endpoint's storage-key lock ------------------------------------------------------


@pytest.mark.parametrize("via", ["bearer", "cookie"])
def test_a_row_pointing_at_another_patients_media_plays_nothing_with_the_key_constraints_gone(
    env, gateway, world, via
):
    """Attack: a recording row of Ana's whose storage key names Ben's media file (a bad import,
    a wrong UPDATE), the database's key constraints gone. Ana's playback of her own recording
    must not stream Ben's file: an empty 403, and no media event."""
    ana, ben = world.patients["ana"], world.patients["ben"]
    own = world.recordings[world.consultation("ana")][0]
    victims = world.recordings[world.consultation("ben")][0]
    subject = world.subject("ana")
    token = env.token(subject)
    url = PlaybackSigner(env.settings().signing_keys(), 300).url(
        own, encode_global_id("Recording", own), env.identity.issuer, subject
    )
    cookie = None
    if via == "cookie":  # the playback started while the row was still right
        started = gateway.http.post(url, headers={"authorization": f"Bearer {token}"})
        assert started.status_code == 204
        cookie = started.cookies["gateway_playback"]
    key = run(
        env, lambda c: c.fetchval("select storage_key from data.recordings where id = $1", own)
    )
    victim_key = f"recordings/{ben}/{victims}.ogg"
    assert (env.media_root / victim_key).exists()
    before = _events(env, subject)
    with constraints_dropped(
        env, "data.recordings", "recordings_storage_key_owned", "recordings_storage_key_unique"
    ):
        run(
            env,
            lambda c: c.execute(
                "update data.recordings set storage_key = $2 where id = $1", own, victim_key
            ),
        )
        try:
            if via == "bearer":
                response = gateway.http.get(url, headers={"authorization": f"Bearer {token}"})
            else:
                response = gateway.http.get(
                    url, headers={"cookie": f"gateway_playback={cookie}", "range": "bytes=0-99"}
                )
        finally:
            run(
                env,
                lambda c: c.execute(
                    "update data.recordings set storage_key = $2 where id = $1", own, key
                ),
            )
    assert (response.status_code, response.content) == (403, b"")
    assert _events(env, subject) == before
    assert ana != ben


# --- the loaders' row scope ----------------------------------------------------------------------


def test_a_role_without_a_row_scope_gets_no_row_and_no_statement_with_every_other_layer_off(
    env, sabotaged, world, monkeypatch
):
    """Support has no row scope on recordings. With the field gate allowing everything, the exit
    check finding nothing foreign and the statement unfiltered as a superuser, support asking for
    Ana's recording by ID still gets null: the loader never sends the statement."""
    from gateway.authz.exit_check import ExitCheck, ExitQuestions

    client, database = sabotaged
    monkeypatch.setattr("gateway.authz.field_check.decide", lambda p, s, t, f: [None] * len(f))
    monkeypatch.setattr(ExitCheck, "questions", lambda self, principal, ledger: ExitQuestions())
    recording = world.recordings[world.consultation("ana")][0]
    statement = queries.RECORDINGS_BY_ID
    with broken(database, statement, unfiltered()[statement]):
        calls = database.calls.get(statement, 0)
        body = client.execute(
            RECORDING,
            env.token(world.subject("support")),
            {"id": encode_global_id("Recording", recording)},
        )
        assert database.calls.get(statement, 0) == calls
    assert body == {"data": {"recording": None}}


# --- who may make a change of access --------------------------------------------------------------


def _guardless_break_glass():
    """OPEN_BREAK_GLASS without its role guard: the grant inserted for whoever calls, as a
    superuser."""
    return keeping(
        "insert into data.break_glass_grants (id, clinician_id, patient_id, reason, expires_at) "
        "values (gen_random_uuid(), $1, $2, $3, now() + interval '5 minutes') returning *",
        2,
        3,
        4,
    )


def _grants_on(env, patient) -> int:
    return run(
        env,
        lambda c: c.fetchval(
            "select count(*) from data.break_glass_grants where patient_id = $1", patient
        ),
    )


@pytest.mark.parametrize("alone", ["MutationPolicy", "AccessChanges._require"])
def test_each_check_of_who_may_change_access_refuses_a_patient_alone(
    env, sabotaged, world, monkeypatch, alone
):
    """Attack: a patient opens break-glass on another patient. With the api function's role
    guard gone (the statement replaced by a plain insert as a superuser) and one of the two
    gateway checks switched off, the other refuses it: FORBIDDEN naming who may, the statement
    never sent, no grant made."""
    client, database = sabotaged
    if alone == "MutationPolicy":
        monkeypatch.setattr(AccessChanges, "_require", lambda self, mutation: None)
    else:
        monkeypatch.setattr(MutationPolicy, "has_permission", lambda self, *a, **k: True)
    victim = world.patients["cy"]
    before = _grants_on(env, victim)
    statement = queries.OPEN_BREAK_GLASS
    with broken(database, statement, _guardless_break_glass()):
        body = client.execute(
            OPEN_BREAK_GLASS,
            env.token(world.subject("ana")),
            {"p": encode_global_id("Patient", victim), "r": REASON, "m": 5},
        )
        assert database.calls.get(statement, 0) == 0
    assert body["data"] is None
    assert [(e["message"], e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        ("Only a clinician may do this", ["openBreakGlass"], "FORBIDDEN")
    ]
    assert _grants_on(env, victim) == before


# --- inputs the gateway checks and the database bounds too ---------------------------------------

IN_A_MONTH = (datetime.now(UTC) + timedelta(days=30)).isoformat()


def _break_glass(world, reason: str, minutes: int) -> tuple[str, str, dict]:
    return (
        OPEN_BREAK_GLASS,
        world.subject("dr_a"),
        {"p": encode_global_id("Patient", world.patients["cy"]), "r": reason, "m": minutes},
    )


def _consent(world, scopes: list[str], expires: str) -> tuple[str, str, dict]:
    return (
        GRANT_CONSENT,
        world.subject("ana"),
        {"p": encode_global_id("Partner", world.partners["pa_none"]), "s": scopes, "e": expires},
    )


def _direct_break_glass(reason: str, minutes: int):
    return queries.OPEN_BREAK_GLASS, lambda w: [
        "clinician",
        w.clinicians["dr_a"],
        w.patients["cy"],
        reason,
        minutes,
    ]


def _direct_consent(scopes: list[str], expires: datetime):
    return queries.GRANT_CONSENT, lambda w: [
        "patient",
        w.patients["ana"],
        w.partners["pa_none"],
        scopes,
        expires,
    ]


def _days(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


UNKNOWN = ["patient/Everything.rs"]
RECORD = ["patient/Patient.rs"]
# (what, table, constraints, the request, the gateway's refusal, the database's direct call)
INPUTS = [
    (
        "a break-glass reason too short",
        "data.break_glass_grants",
        ("break_glass_reason_length",),
        lambda w: _break_glass(w, "  looking around   ", 5),
        "'reason' must be at least 20 characters",
        _direct_break_glass("looking around", 5),
    ),
    (
        "break-glass past a day",
        "data.break_glass_grants",
        ("break_glass_at_most_a_day",),
        lambda w: _break_glass(w, REASON, 24 * 60 + 1),
        "'minutes' must be between 1 and 240",
        _direct_break_glass(REASON, 24 * 60 + 1),
    ),
    (
        "a consent to an unknown scope",
        "data.consents",
        ("consents_scopes_known",),
        lambda w: _consent(w, UNKNOWN, IN_A_MONTH),
        "'scopes' must be among patient/Consultation.rs, patient/Recording.rs, patient/Patient.rs",
        _direct_consent(UNKNOWN, _days(30)),
    ),
    (
        "a consent past three years",
        "data.consents",
        ("consents_at_most_three_years",),
        lambda w: _consent(w, RECORD, _days(4 * 365).isoformat()),
        "'expiresAt' must be in the future and within 730 days",
        _direct_consent(RECORD, _days(4 * 365)),
    ),
    (
        "a consent that has already expired",
        "data.consents",
        ("consents_expiry_after_grant",),
        lambda w: _consent(w, RECORD, _days(-1).isoformat()),
        "'expiresAt' must be in the future and within 730 days",
        _direct_consent(RECORD, _days(-1)),
    ),
]


def _rows_of(env, table: str) -> int:
    return run(env, lambda c: c.fetchval(f"select count(*) from {table}"))


@pytest.mark.parametrize(
    ("what", "table", "constraints", "request_of", "refusal", "direct"),
    INPUTS,
    ids=[item[0] for item in INPUTS],
)
def test_the_gateway_refuses_a_bad_input_with_the_databases_constraint_dropped(
    env, gateway, world, what, table, constraints, request_of, refusal, direct
):
    query, subject, variables = request_of(world)
    before = _rows_of(env, table)
    with constraints_dropped(env, table, *constraints):
        body = gateway.execute(query, env.token(subject), variables)
    assert body["data"] is None
    assert [(e["message"], e["extensions"]["code"]) for e in body["errors"]] == [
        (refusal, "BAD_USER_INPUT")
    ]
    assert _rows_of(env, table) == before


@pytest.mark.parametrize(
    ("what", "table", "constraints", "request_of", "refusal", "direct"),
    INPUTS,
    ids=[item[0] for item in INPUTS],
)
def test_the_database_refuses_a_bad_input_the_gateway_never_checked(
    env, world, what, table, constraints, request_of, refusal, direct
):
    """The api function called directly (no gateway, as its own owner would): the constraint
    alone refuses the row."""
    statement, arguments = direct
    who = json.dumps({"request_id": world.tag, "issuer": world.issuer, "subject": world.tag})

    async def call(connection):
        try:
            async with connection.transaction():
                await connection.fetch(statement, who, *arguments(world))
        except asyncpg.CheckViolationError as exc:
            return exc.constraint_name
        return None

    assert run(env, call) in constraints
