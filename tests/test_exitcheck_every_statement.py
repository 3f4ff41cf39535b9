"""Layer 4 for every statement that returns patient rows, on every path that sends them.

Each case breaks one statement of ``gateway.data.queries`` (``tests.sabotage``): it becomes a
superuser query without the caller's predicate that returns another patient's rows, the way a
forgotten WHERE clause, a wrong join or a shared cache would. A request that uses the statement
(a GraphQL query or mutation, a media playback, a subscription) must then be withheld whole:
WITHHELD over GraphQL, an empty 403 for media, WITHHELD then ``complete`` for a subscription;
with no foreign ID anywhere in what was sent, one trip counted, and an alert naming the foreign
patient in the audit trail. ``test_every_statement_that_returns_patient_rows_is_sabotaged_here``
keeps the list complete when a statement is added.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from gateway.authz.playback import PlaybackSigner
from gateway.data import queries
from gateway.ids import encode_global_id
from tests.leak_world import (
    REASON,
    World,
    admin,
    drop_world,
    insert_break_glass,
    insert_consent,
    leaked,
    make_world,
    owned,
)
from tests.sabotage import NO_GRANT, broken, sabotaged_gateway
from tests.subscriber import Subscriber, metric

WITHHELD = {
    "data": None,
    "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
}
EVENTS = (
    "subscription($id: ID!) { consultationEvents(consultationId: $id) { kind "
    "consultation { id reason recordings { id playbackUrl } } } }"
)

# Statements that return no patient's rows, and why: nothing to sabotage for layer 4.
NOT_PATIENT_ROWS = {
    "ACCOUNT_FOR": "identity binding of the caller's own token, before any request runs",
    "CLINICIANS_BY_ID": "the clinician directory, not patient data",
    "PARTNERS_BY_ID": "the partner directory, not patient data",
    "ALL_PARTNERS": "the partner directory, not patient data",
    "AUTHORIZED_PATIENTS": "the exit check's own question; returns patient IDs it then compares",
    "RECORD_ACCESS_EVENTS": "writes the audit trail; returns nothing",
    "RECORD_ACCESS_EVENTS_IF_AUTHORIZED": "the exit check's questions and the audit write; "
    "returns the patient IDs it found foreign",
    "PING": "readiness",
}


def gid(type_name: str, pk: UUID) -> str:
    return encode_global_id(type_name, pk)


# --- sabotaged statements: superuser SQL returning the victim's rows ----------------------------


def rows_asked_for(table: str) -> Callable[[World, UUID], Any]:
    """The by-ID statement without its predicate: whichever rows were asked for, anyone's."""
    sql = f"select *, {NO_GRANT} from {table} where id = any($1::uuid[])"
    return lambda world, victim: lambda role, actor, scopes, keys: (sql, [keys])


def victims_rows(sql: str, limit_at: int | None = None) -> Callable[[World, UUID], Any]:
    """The victim's rows, whatever was asked ($1 is the victim, $2 the statement's limit)."""

    def make(world: World, victim: UUID):
        def replacement(*args):
            return sql, [victim] if limit_at is None else [victim, args[limit_at]]

        return replacement

    return make


def victims_recordings_as_asked(world: World, victim: UUID):
    """A wrong join: the victim's recordings, labelled as those of each consultation asked for."""

    def replacement(role, actor, scopes, consultations):
        return (
            "select r.id, k.id as consultation_id, r.patient_id, r.segment_index, r.mode, "
            "r.started_at, r.duration_seconds, r.content_type, r.byte_size, r.storage_key, "
            f"{NO_GRANT} from data.recordings r cross join unnest($1::uuid[]) k(id) "
            "where r.patient_id = $2 order by r.segment_index",
            [consultations, victim],
        )

    return replacement


CONSULTATIONS = f"select *, {NO_GRANT} from data.consultations where patient_id = $1"
ACCESS_EVENTS = (
    "select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id, null::text as "
    "actor_name, e.patient_id, e.client_id, e.break_glass_reason, e.objects "
    "from data.access_events e where e.patient_id = $1 and e.seq is not null "
    "order by e.seq desc limit $2"
)
CONSENTS = (
    "select k.*, p.name as partner_name from data.consents k "
    "join data.partners p on p.id = k.partner_id where k.patient_id = $1"
)
ONE_CONSENT = "select * from data.consents where patient_id = $1 limit 1"
ONE_GRANT = "select * from data.break_glass_grants where patient_id = $1 limit 1"


# --- attacks: requests that use the statement ----------------------------------------------------


@dataclass(frozen=True)
class Case:
    statement: str
    sabotage: Callable[[World, UUID], Any]
    path: str  # graphql | media | subscription
    caller: str
    victim: str
    # GraphQL: (query, variables) of the world; media: the recording; subscription: consultation.
    request: Callable[[World], Any]


def _expires() -> str:
    return (datetime.now(UTC) + timedelta(days=30)).isoformat()


CASES = [
    Case(
        "CONSULTATIONS_BY_ID",
        rows_asked_for("data.consultations"),
        "graphql",
        "ana",
        "ben",
        lambda w: (
            "query($id: ID!) { consultation(id: $id) { id reason summary } }",
            {"id": gid("Consultation", w.consultation("ben"))},
        ),
    ),
    Case(
        "CONSULTATIONS_BY_ID",
        rows_asked_for("data.consultations"),
        "subscription",
        "ana",
        "ben",
        lambda w: w.consultation("ben"),
    ),
    Case(
        "CONSULTATIONS_PAGE",
        victims_rows(f"{CONSULTATIONS} order by scheduled_at desc, id desc limit $2", 3),
        "graphql",
        "ana",
        "ben",
        lambda w: ("{ consultations(first: 10) { edges { node { id reason } } } }", None),
    ),
    Case(
        "CONSULTATIONS_BY_PATIENT",
        victims_rows(CONSULTATIONS),
        "graphql",
        "ana",
        "ben",
        lambda w: (
            "query($id: ID!) { patient(id: $id) { id consultations { id reason } } }",
            {"id": gid("Patient", w.patients["ana"])},
        ),
    ),
    Case(
        "RECORDINGS_BY_CONSULTATION",
        victims_recordings_as_asked,
        "graphql",
        "ana",
        "ben",
        lambda w: (
            "query($id: ID!) { consultation(id: $id) { id recordings { id playbackUrl } } }",
            {"id": gid("Consultation", w.consultation("ana"))},
        ),
    ),
    Case(
        "RECORDINGS_BY_CONSULTATION",
        victims_recordings_as_asked,
        "subscription",
        "ana",
        "ben",
        lambda w: w.consultation("ana"),
    ),
    Case(
        "RECORDINGS_BY_ID",
        rows_asked_for("data.recordings"),
        "graphql",
        "ana",
        "ben",
        lambda w: (
            "query($id: ID!) { recording(id: $id) { id byteSize playbackUrl } }",
            {"id": gid("Recording", w.recordings[w.consultation("ben")][0])},
        ),
    ),
    Case(
        "RECORDINGS_BY_ID",
        rows_asked_for("data.recordings"),
        "media",
        "ana",
        "ben",
        lambda w: w.recordings[w.consultation("ben")][0],
    ),
    Case(
        "PATIENTS_BY_ID",
        rows_asked_for("data.patients"),
        "graphql",
        "ana",
        "ben",
        lambda w: (
            "query($id: ID!) { patient(id: $id) { id displayName birthDate } }",
            {"id": gid("Patient", w.patients["ben"])},
        ),
    ),
    Case(
        "ACCESS_EVENTS_PAGE",
        victims_rows(ACCESS_EVENTS, 3),
        "graphql",
        "ana",
        "ben",
        lambda w: (
            "{ accessLog(first: 5) { edges { node { kind patientId accessorSubject "
            "objects { type id } } } } }",
            None,
        ),
    ),
    Case(
        "CONSENTS_OF",
        victims_rows(CONSENTS),
        "graphql",
        "ana",
        "ben",
        lambda w: ("{ consents { id scopes active partner { name } } }", None),
    ),
    Case(
        "GRANT_CONSENT",
        victims_rows(ONE_CONSENT),
        "graphql",
        "ana",
        "ben",
        lambda w: (
            "mutation($p: ID!, $e: DateTime!) { grantConsent(partnerId: $p, "
            'scopes: ["patient/Patient.rs"], expiresAt: $e) { id scopes } }',
            {"p": gid("Partner", w.partners["pa_none"]), "e": _expires()},
        ),
    ),
    Case(
        "REVOKE_CONSENT",
        victims_rows(ONE_CONSENT),
        "graphql",
        "ana",
        "ben",
        lambda w: (
            "mutation($id: ID!) { revokeConsent(id: $id) { id scopes } }",
            {"id": gid("Consent", w.extra["ben_consent"])},
        ),
    ),
    Case(
        "OPEN_BREAK_GLASS",
        victims_rows(ONE_GRANT),
        "graphql",
        "dr_a",
        "cy",
        lambda w: (
            "mutation($p: ID!, $r: String!) { openBreakGlass(patientId: $p, reason: $r, "
            "minutes: 5) { id reason patient { id displayName } } }",
            {"p": gid("Patient", w.patients["ana"]), "r": REASON},
        ),
    ),
]


def _case_id(case: Case) -> str:
    return f"{case.statement}-{case.path}"


@pytest.fixture(scope="module")
def world(env):
    made = make_world(env, "exit")

    async def grants(connection):
        made.extra = {
            "ben_consent": await insert_consent(
                connection, made.patients["ben"], made.partners["pa_some"], ["patient/Patient.rs"]
            ),
            "cy_grant": await insert_break_glass(
                connection, made.clinicians["dr_c"], made.patients["cy"], expired=True
            ),
        }

    asyncio.run(admin(env, grants))
    yield made
    drop_world(env, made)


@pytest.fixture(scope="module")
def gateway(env, world):
    with sabotaged_gateway(env) as (client, database):
        # Ben's own reads before any sabotage: his access log has events to leak.
        body = client.execute(
            "{ consultations { edges { node { id } } } }", env.token(world.subject("ben"))
        )
        assert "errors" not in body
        yield client, database


def _allowed(env, world: World, caller: str) -> set[UUID]:
    """The patients the caller may hold, as superuser: their own, or those they conducted a
    consultation with or hold an active break-glass grant for."""
    if caller in world.patients:
        return {world.patients[caller]}

    async def read(connection):
        rows = await connection.fetch(
            "select patient_id from data.consultations where clinician_id = $1 union "
            "select patient_id from data.break_glass_grants where clinician_id = $1 "
            "and revoked_at is null and now() < expires_at",
            world.clinicians[caller],
        )
        return {r["patient_id"] for r in rows}

    return asyncio.run(admin(env, read))


def _alerts_since(env, seq: int, subject: str) -> list[dict[str, Any]]:
    async def read(connection):
        rows = await connection.fetch(
            "select kind, patient_id, detail::text as detail, objects::text as objects "
            "from data.access_events where seq > $1 and subject = $2 and kind = 'alert' "
            "order by seq",
            seq,
            subject,
        )
        return [
            {
                "patient_id": r["patient_id"],
                "detail": json.loads(r["detail"]),
                "objects": [(o["type"], o["id"]) for o in json.loads(r["objects"])],
            }
            for r in rows
        ]

    return asyncio.run(admin(env, read))


def _owners(env, objects: list[tuple[str, str]]) -> set[UUID | None]:
    """The owner of each (type, id) an alert names, as superuser."""
    truth = owned(env)

    async def access_event_owners(connection):
        seqs = [int(pk) for kind, pk in objects if kind == "AccessEvent"]
        rows = await connection.fetch(
            "select patient_id from data.access_events where seq = any($1::bigint[])", seqs
        )
        return {r["patient_id"] for r in rows}

    found = {truth.owner_of.get(UUID(pk)) for kind, pk in objects if kind != "AccessEvent"}
    return found | asyncio.run(admin(env, access_event_owners))


def _last_seq(env) -> int:
    return asyncio.run(
        admin(env, lambda c: c.fetchval("select coalesce(max(seq), 0) from data.access_events"))
    )


def _send(env, client, world: World, case: Case) -> tuple[Any, Any]:
    """Make the case's request as its caller: (what was sent to the caller, the exact refusal
    expected)."""
    subject = world.subject(case.caller)
    token = env.token(subject)
    if case.path == "graphql":
        query, variables = case.request(world)
        response = client.post(query, token, variables)
        assert response.status_code == 200
        return response.json(), WITHHELD
    if case.path == "media":
        recording = case.request(world)
        signer = PlaybackSigner(env.settings().signing_keys(), 300)
        url = signer.url(recording, gid("Recording", recording), env.identity.issuer, subject)
        response = client.http.get(url, headers={"authorization": f"Bearer {token}"})
        return (response.status_code, response.content), (403, b"")

    async def subscribe():
        socket = await Subscriber.connect(client.base_url, token)
        try:
            await socket.subscribe("1", EVENTS, case.request(world))
            await socket.next("1")
            await socket.next("1")
            return socket.messages[1:]
        finally:
            await socket.close()

    expected = [
        {"id": "1", "type": "next", "payload": WITHHELD},
        {"id": "1", "type": "complete"},
    ]
    return asyncio.run(subscribe()), expected


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_a_statement_returning_a_foreign_patients_rows_gets_the_whole_send_withheld(
    env, world, gateway, case, monkeypatch
):
    client, database = gateway
    if case.path == "media":
        # On this path the field check refuses the sabotaged row before the disclosure step
        # (tests/test_field_check_alone.py); switched off, the exit check alone must withhold.
        monkeypatch.setattr("gateway.web.media.decide", lambda *_: None)
    statement = getattr(queries, case.statement)
    victim = world.patients[case.victim]
    subject = world.subject(case.caller)
    since = _last_seq(env)
    trips = metric(client.http, "gateway_exit_check_trips_total")
    calls = database.calls.get(statement, 0)
    with broken(database, statement, case.sabotage(world, victim)):
        sent, refusal = _send(env, client, world, case)
    assert database.calls.get(statement, 0) > calls  # the request did use the broken statement
    assert sent == refusal
    assert leaked(sent, owned(env).foreign_ids(_allowed(env, world, case.caller))) == set()
    assert metric(client.http, "gateway_exit_check_trips_total") == trips + 1
    alerts = _alerts_since(env, since, subject)
    assert [(a["patient_id"], a["detail"]) for a in alerts] == [
        (victim, {"layer": 4, "reason": "exit-check"})
    ]
    assert alerts[0]["objects"]
    assert _owners(env, alerts[0]["objects"]) == {victim}


def test_every_statement_that_returns_patient_rows_is_sabotaged_here():
    sabotaged = {case.statement for case in CASES}
    assert sabotaged.isdisjoint(NOT_PATIENT_ROWS)
    assert sabotaged | set(NOT_PATIENT_ROWS) == set(queries.STATEMENTS)
    paths = {(case.statement, case.path) for case in CASES}
    # Media plays a recording by ID; subscriptions read the consultation, then its relations.
    assert {
        ("RECORDINGS_BY_ID", "media"),
        ("CONSULTATIONS_BY_ID", "subscription"),
        ("RECORDINGS_BY_CONSULTATION", "subscription"),
    } <= paths
