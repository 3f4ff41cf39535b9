"""Subscriptions leak nothing: over WebSocket (graphql-transport-ws), every event of
``consultationEvents`` is read through its own loaders, exit-checked and audited like a response,
reaches only its own subscriber, and ends the stream when it may not be sent or when access ended.

Every expectation is read as superuser (``tests.support.leak_world``), never from the gateway's
answers.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from gateway.audit.events import expand_objects
from gateway.authz.playback import PlaybackSigner
from gateway.data import queries
from gateway.ids import decode_global_id, encode_global_id
from tests.support.executors import trusted
from tests.support.leak_world import (
    REASON,
    add_recording,
    admin,
    drop_world,
    expire_break_glass,
    leaked,
    make_world,
    owned,
)
from tests.support.sabotage import NO_GRANT, broken, sabotaged_gateway
from tests.support.subscriber import Subscriber, metric, touch

EVENTS = "subscription($id: ID!) {{ consultationEvents(consultationId: $id) {{ {} }} }}"
PLAIN = trusted(
    EVENTS.format(
        "kind consultation { id status reason patient { id displayName } recordings { id } }"
    )
)
NESTED = EVENTS.format(
    "kind consultation { id status reason clinicianNotes patient { id displayName } "
    "clinician { id displayName } recordings { id playbackUrl } }"
)
WITHHELD = {
    "data": None,
    "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
}
SUBSCRIPTION_DETAIL = {"subscription": "consultationEvents"}


@pytest.fixture(scope="module")
def world(env):
    made = make_world(env, "subs")
    yield made
    drop_world(env, made)


def gid(type_name: str, pk: UUID) -> str:
    return encode_global_id(type_name, pk)


def run(env, work):
    return asyncio.run(admin(env, work))


def truth_of(env, consultation: UUID) -> dict[str, Any]:
    """The consultation, its patient, clinician and recordings (in segment order), as superuser."""

    async def read(connection):
        row = await connection.fetchrow(
            "select c.id, c.status, c.reason, c.patient_id, p.display_name as patient_name, "
            "c.clinician_id, d.display_name as clinician_name from data.consultations c "
            "join data.patients p on p.id = c.patient_id "
            "join data.clinicians d on d.id = c.clinician_id where c.id = $1",
            consultation,
        )
        recordings = await connection.fetch(
            "select id from data.recordings where consultation_id = $1 order by segment_index",
            consultation,
        )
        return dict(row) | {"recordings": [r["id"] for r in recordings]}

    return run(env, read)


def plain_event(env, kind: str, consultation: UUID) -> dict[str, Any]:
    """What PLAIN must deliver for ``consultation``, from the superuser's truth."""
    truth = truth_of(env, consultation)
    return {
        "kind": kind,
        "consultation": {
            "id": gid("Consultation", truth["id"]),
            "status": truth["status"],
            "reason": truth["reason"],
            "patient": {
                "id": gid("Patient", truth["patient_id"]),
                "displayName": truth["patient_name"],
            },
            "recordings": [{"id": gid("Recording", r)} for r in truth["recordings"]],
        },
    }


async def audit_since_async(env, seq: int, subject: str) -> list[dict[str, Any]]:
    """Access events written since ``seq`` for ``subject``, in order (superuser)."""

    async def read(connection):
        rows = await connection.fetch(
            "select request_id, kind, subject, role, patient_id, break_glass_reason, "
            "data.event_objects(access_events)::text as objects, detail::text as detail "
            "from data.access_events "
            "where seq > $1 and subject = $2 order by seq",
            seq,
            subject,
        )
        return [
            dict(r)
            | {
                "objects": expand_objects(json.loads(r["objects"])),
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]

    return await admin(env, read)


def audit_since(env, seq: int, subject: str) -> list[dict[str, Any]]:
    return asyncio.run(audit_since_async(env, seq, subject))


def last_seq(env) -> int:
    return run(env, lambda c: c.fetchval("select coalesce(max(seq), 0) from data.access_events"))


def _signed_for(env, url: str, subject: str) -> UUID:
    """The recording a playback URL plays, once its signature is verified for ``subject``."""
    path, _, query = url.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&"))
    _, recording = decode_global_id(path.removeprefix("/media/recordings/"))
    signer = PlaybackSigner(env.settings().signing_keys(), 300)
    assert signer.verify(
        recording, env.identity.issuer, subject, int(params["exp"]), params["kid"], params["sig"]
    )
    return recording


def assert_no_foreign(env, value: Any, allowed: set[UUID]) -> None:
    assert leaked(value, owned(env).foreign_ids(allowed)) == set()


# --- 1. each subscriber gets only their own consultation's events --------------------------------


def test_two_patients_subscribed_at_once_each_receive_only_their_own_consultations_events(
    env, server, world
):
    ana, ben = world.patients["ana"], world.patients["ben"]
    ana_c, ben_c = world.consultation("ana"), world.consultation("ben")

    async def scenario():
        ana_socket = await Subscriber.connect(server.url, env.token(world.subject("ana")))
        ben_socket = await Subscriber.connect(server.url, env.token(world.subject("ben")))
        try:
            await ana_socket.subscribe("1", PLAIN, ana_c)
            await ben_socket.subscribe("1", PLAIN, ben_c)
            events = {"ana": [await ana_socket.event("1")], "ben": [await ben_socket.event("1")]}
            # Ben's change first: had Ana's stream carried it, it would come before her own.
            await touch(env, ben_c)
            events["ben"].append(await ben_socket.event("1"))
            await touch(env, ana_c)
            events["ana"].append(await ana_socket.event("1"))
            await touch(env, ben_c)
            events["ben"].append(await ben_socket.event("1"))
            return events, ana_socket.messages, ben_socket.messages
        finally:
            await ana_socket.close()
            await ben_socket.close()

    events, ana_messages, ben_messages = asyncio.run(scenario())
    assert events["ana"] == [
        plain_event(env, "current", ana_c),
        plain_event(env, "updated", ana_c),
    ]
    assert events["ben"] == [
        plain_event(env, "current", ben_c),
        plain_event(env, "updated", ben_c),
        plain_event(env, "updated", ben_c),
    ]
    assert_no_foreign(env, ana_messages, {ana})
    assert_no_foreign(env, ben_messages, {ben})


def test_one_clinicians_two_subscriptions_on_one_connection_each_carry_only_their_own_patient(
    env, server, world
):
    ana, ben = world.patients["ana"], world.patients["ben"]
    ana_c, ben_c = world.consultation("ana"), world.consultation("ben")
    subject = world.subject("dr_a")  # conducted both
    since = last_seq(env)

    async def scenario():
        socket = await Subscriber.connect(server.url, env.token(subject))
        try:
            await socket.subscribe("ana", PLAIN, ana_c)
            await socket.subscribe("ben", PLAIN, ben_c)
            events = {"ana": [await socket.event("ana")], "ben": [await socket.event("ben")]}
            await touch(env, ben_c)
            events["ben"].append(await socket.event("ben"))
            await touch(env, ana_c)
            events["ana"].append(await socket.event("ana"))
            await touch(env, ana_c)
            events["ana"].append(await socket.event("ana"))
            return events, socket
        finally:
            await socket.close()

    events, socket = asyncio.run(scenario())
    assert events["ana"] == [
        plain_event(env, "current", ana_c),
        plain_event(env, "updated", ana_c),
        plain_event(env, "updated", ana_c),
    ]
    assert events["ben"] == [plain_event(env, "current", ben_c), plain_event(env, "updated", ben_c)]
    assert_no_foreign(env, socket.of("ana"), {ana})
    assert_no_foreign(env, socket.of("ben"), {ben})
    assert_no_foreign(env, socket.messages, {ana, ben})
    # Each subscription its own context: one request id per subscription, one patient each.
    disclosures = [e for e in audit_since(env, since, subject) if e["kind"] == "disclosure"]
    by_request: dict[str, set[UUID]] = {}
    for event in disclosures:
        by_request.setdefault(event["request_id"], set()).add(event["patient_id"])
    assert sorted(by_request.values(), key=lambda s: str(s)) == sorted(
        [{ana}, {ben}], key=lambda s: str(s)
    )
    assert [e["patient_id"] for e in disclosures].count(ana) == 3
    assert [e["patient_id"] for e in disclosures].count(ben) == 2


# --- 2. every event exit-checked and audited, with exactly what was read -------------------------


def test_every_event_of_a_nested_selection_is_audited_with_exactly_the_fields_read_and_denied(
    env, server, client, world
):
    ana = world.patients["ana"]
    subject = world.subject("ana")
    consultation = world.consultation("ana")
    truth = truth_of(env, consultation)
    since = last_seq(env)
    disclosure_objects = sorted(
        [
            {
                "type": "Consultation",
                "id": str(consultation),
                "fields": ["clinician", "id", "patient", "reason", "recordings", "status"],
            },
            {"type": "Patient", "id": str(ana), "fields": ["displayName", "id"]},
            *[
                {"type": "Recording", "id": str(r), "fields": ["id", "playbackUrl"]}
                for r in truth["recordings"]
            ],
        ],
        key=lambda o: (o["type"], o["id"]),
    )
    denial_objects = [
        {"type": "Consultation", "id": str(consultation), "fields": ["clinicianNotes"]}
    ]

    def expected_events(request_id: str, count: int) -> list[dict[str, Any]]:
        one = [
            {
                "request_id": request_id,
                "kind": kind,
                "subject": subject,
                "role": "patient",
                "patient_id": ana,
                "break_glass_reason": None,
                "objects": objects,
                "detail": SUBSCRIPTION_DETAIL,
            }
            for kind, objects in (("disclosure", disclosure_objects), ("denial", denial_objects))
        ]
        return one * count

    audited = []

    async def scenario():
        socket = await Subscriber.connect(server.url, env.token(subject))
        try:
            await socket.subscribe("1", NESTED, consultation)
            first = await socket.next("1")
            audited.append(await audit_since_async(env, since, subject))
            await touch(env, consultation)
            second = await socket.next("1")
            audited.append(await audit_since_async(env, since, subject))
            return [first, second]
        finally:
            await socket.close()

    messages = asyncio.run(scenario())
    for kind, message in zip(("current", "updated"), messages, strict=True):
        payload = message["payload"]
        assert message["type"] == "next"
        event = copy.deepcopy(payload["data"]["consultationEvents"])
        urls = [recording.pop("playbackUrl") for recording in event["consultation"]["recordings"]]
        assert event == {
            "kind": kind,
            "consultation": {
                "id": gid("Consultation", consultation),
                "status": truth["status"],
                "reason": truth["reason"],
                "clinicianNotes": None,
                "patient": {"id": gid("Patient", ana), "displayName": truth["patient_name"]},
                "clinician": {
                    "id": gid("Clinician", truth["clinician_id"]),
                    "displayName": truth["clinician_name"],
                },
                "recordings": [{"id": gid("Recording", r)} for r in truth["recordings"]],
            },
        }
        assert [_signed_for(env, url, subject) for url in urls] == truth["recordings"]
        assert [(e["path"], e["extensions"]["code"]) for e in payload["errors"]] == [
            (["consultationEvents", "consultation", "clinicianNotes"], "FORBIDDEN")
        ]
    request_id = audited[0][0]["request_id"]
    assert audited[0] == expected_events(request_id, 1)  # written before the event was sent
    assert audited[1] == expected_events(request_id, 2)
    assert_no_foreign(env, messages, {ana})

    log = client.execute(
        "{ accessLog(first: 2) { edges { node { kind accessorRole accessorSubject "
        "breakGlassReason objects { type id fields } } } } }",
        env.token(subject),
    )
    shown = [
        {
            "kind": "DISCLOSURE",
            "accessorRole": "PATIENT",
            "accessorSubject": subject,
            "breakGlassReason": None,
            "objects": [
                {"type": o["type"], "id": gid(o["type"], UUID(o["id"])), "fields": o["fields"]}
                for o in disclosure_objects
            ],
        }
    ] * 2
    assert log == {"data": {"accessLog": {"edges": [{"node": node} for node in shown]}}}


# --- 3. a sabotaged loader on the WebSocket path trips the exit check and ends the stream ---------


def _recordings_of_another_patient(victim: UUID):
    """RECORDINGS_BY_CONSULTATION as a superuser query that joined on the wrong key: the
    victim's recordings, labelled as the recordings of each consultation asked for."""

    def replacement(role, actor, scopes, consultations):
        return (
            "select r.id, k.id as consultation_id, r.patient_id, r.segment_index, r.mode, "
            "r.started_at, r.duration_seconds, r.content_type, r.byte_size, r.storage_key, "
            f"{NO_GRANT} from data.recordings r cross join unnest($1::uuid[]) k(id) "
            "where r.patient_id = $2 order by r.segment_index",
            [consultations, victim],
        )

    return replacement


def _alerts_since(env, seq: int, subject: str) -> list[tuple[UUID, dict, list[str]]]:
    return [
        (e["patient_id"], e["detail"], sorted(o["id"] for o in e["objects"]))
        for e in audit_since(env, seq, subject)
        if e["kind"] == "alert"
    ]


def test_a_sabotaged_loader_mid_stream_trips_the_exit_check_and_ends_the_stream(
    env, world, executor, manifest
):
    """On both executors' gateways: the subscription by text, and by hash on a production
    gateway (tests.support.executors)."""
    ana, ben = world.patients["ana"], world.patients["ben"]
    subject = world.subject("ana")
    consultation = world.consultation("ana")
    ben_recordings = sorted(str(r) for c in world.consultations["ben"] for r in world.recordings[c])
    since = last_seq(env)
    with sabotaged_gateway(env, executor, manifest) as (client, database):
        before = metric(client.http, "gateway_exit_check_trips_total")

        async def scenario():
            socket = await Subscriber.connect(client.base_url, env.token(subject), executor)
            try:
                await socket.subscribe("1", PLAIN, consultation)
                first = await socket.event("1")
                with broken(
                    database,
                    queries.RECORDINGS_BY_CONSULTATION,
                    _recordings_of_another_patient(ben),
                ):
                    await touch(env, consultation)
                    withheld = await socket.next("1")
                    ended = await socket.next("1")
                return first, withheld, ended, socket.messages
            finally:
                await socket.close()

        first, withheld, ended, messages = asyncio.run(scenario())
        trips = metric(client.http, "gateway_exit_check_trips_total")
    assert first == plain_event(env, "current", consultation)
    assert withheld == {"id": "1", "type": "next", "payload": WITHHELD}
    assert ended == {"id": "1", "type": "complete"}
    assert_no_foreign(env, messages, {ana})
    assert trips == before + 1
    assert _alerts_since(env, since, subject) == [
        (ben, {"layer": 4, "reason": "exit-check"}, ben_recordings)
    ]
    # The withheld event was not audited as a disclosure: only the first one was.
    disclosed = [e for e in audit_since(env, since, subject) if e["kind"] == "disclosure"]
    assert [e["patient_id"] for e in disclosed] == [ana]


# --- 4. access lost mid-stream ends the stream at the next change --------------------------------


def test_a_partners_stream_ends_at_the_next_change_once_the_patient_revoked_consent(
    env, server, client, world
):
    partner = world.subject("pa_full")
    consultation = world.consultation("ana")
    patient_token = env.token(world.subject("ana"))
    granted = client.execute(
        "mutation($p: ID!, $e: DateTime!) { grantConsent(partnerId: $p, "
        'scopes: ["patient/Consultation.rs", "patient/Patient.rs"], expiresAt: $e) { id } }',
        patient_token,
        {
            "p": gid("Partner", world.partners["pa_full"]),
            "e": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
    )["data"]["grantConsent"]["id"]
    selection = EVENTS.format("kind consultation { id status patient { id displayName } }")
    since = last_seq(env)
    revoked = {}

    async def scenario():
        token = env.token(partner, scope="patient/Consultation.rs patient/Patient.rs", azp=partner)
        socket = await Subscriber.connect(server.url, token)
        try:
            await socket.subscribe("1", selection, consultation)
            first = await socket.event("1")
            revoked.update(
                client.execute(
                    "mutation($id: ID!) { revokeConsent(id: $id) { id active } }",
                    patient_token,
                    {"id": granted},
                )
            )
            await touch(env, consultation)
            return first, await socket.next("1"), socket.messages
        finally:
            await socket.close()

    try:
        first, ended, messages = asyncio.run(scenario())
    finally:
        run(
            env,
            lambda c: c.execute(
                "update data.consents set revoked_at = coalesce(revoked_at, now()) where id = $1",
                decode_global_id(granted)[1],
            ),
        )
    truth = truth_of(env, consultation)
    assert first == {
        "kind": "current",
        "consultation": {
            "id": gid("Consultation", consultation),
            "status": truth["status"],
            "patient": {
                "id": gid("Patient", truth["patient_id"]),
                "displayName": truth["patient_name"],
            },
        },
    }
    assert revoked == {"data": {"revokeConsent": {"id": granted, "active": False}}}
    assert ended == {"id": "1", "type": "complete"}
    assert [m["type"] for m in messages] == ["connection_ack", "next", "complete"]
    assert_no_foreign(env, messages, {world.patients["ana"]})
    disclosed = [e for e in audit_since(env, since, partner) if e["kind"] == "disclosure"]
    assert len(disclosed) == 1  # the first state; nothing after the revocation


def test_a_clinicians_stream_ends_at_the_next_change_once_their_break_glass_expired(
    env, server, client, world
):
    subject = world.subject("dr_d")  # never treated Cy
    cy = world.patients["cy"]
    consultation = world.consultation("cy")
    opened = client.execute(
        "mutation($p: ID!, $r: String!) { openBreakGlass(patientId: $p, reason: $r, minutes: 5) "
        "{ id } }",
        env.token(subject),
        {"p": gid("Patient", cy), "r": REASON},
    )["data"]["openBreakGlass"]["id"]
    grant = decode_global_id(opened)[1]

    async def scenario():
        socket = await Subscriber.connect(server.url, env.token(subject))
        try:
            await socket.subscribe("1", PLAIN, consultation)
            first = await socket.event("1")
            await admin(env, lambda c: expire_break_glass(c, grant))
            await touch(env, consultation)
            return first, await socket.next("1"), socket.messages
        finally:
            await socket.close()

    try:
        first, ended, messages = asyncio.run(scenario())
    finally:
        run(env, lambda c: expire_break_glass(c, grant))
    assert first == plain_event(env, "current", consultation)
    assert ended == {"id": "1", "type": "complete"}
    assert [m["type"] for m in messages] == ["connection_ack", "next", "complete"]
    assert_no_foreign(env, messages, {cy})


# --- 5. a new recording arrives as its own event -------------------------------------------------


def test_a_new_recording_arrives_as_a_recording_added_event_with_the_recording(env, server, world):
    ana = world.patients["ana"]
    consultation = world.consultation("ana", 1)
    added: list[UUID] = []

    async def scenario():
        socket = await Subscriber.connect(server.url, env.token(world.subject("ana")))
        try:
            await socket.subscribe("1", PLAIN, consultation)
            first = await socket.event("1")
            added.append(await admin(env, lambda c: add_recording(c, ana, consultation, 7)))
            return first, await socket.event("1"), socket.messages
        finally:
            await socket.close()

    try:
        first, second, messages = asyncio.run(scenario())
        expected = plain_event(env, "recording-added", consultation)
    finally:
        run(
            env,
            lambda c: c.execute("delete from data.recordings where id = any($1::uuid[])", added),
        )
    assert first["consultation"]["recordings"] == [
        {"id": gid("Recording", r)} for r in world.recordings[consultation]
    ]
    assert second == expected
    assert second["consultation"]["recordings"][-1] == {"id": gid("Recording", added[0])}
    assert_no_foreign(env, messages, {ana})


# --- 6. break-glass reads over WebSocket carry the reason into the access log --------------------


def test_break_glass_reads_over_websocket_carry_the_reason_into_the_patients_access_log(
    env, server, client, world
):
    subject = world.subject("dr_a")  # treated Ana and Ben, never Cy
    cy = world.patients["cy"]
    consultation = world.consultation("cy")
    token = env.token(subject)
    opened = client.execute(
        "mutation($p: ID!, $r: String!) { openBreakGlass(patientId: $p, reason: $r, minutes: 5) "
        "{ id } }",
        token,
        {"p": gid("Patient", cy), "r": REASON},
    )["data"]["openBreakGlass"]["id"]
    grant = decode_global_id(opened)[1]
    since = last_seq(env)
    before = metric(client.http, "gateway_break_glass_reads_total")

    async def scenario():
        socket = await Subscriber.connect(server.url, token)
        try:
            await socket.subscribe("1", PLAIN, consultation)
            first = await socket.event("1")
            await touch(env, consultation)
            return first, await socket.event("1"), socket.messages
        finally:
            await socket.close()

    try:
        first, second, messages = asyncio.run(scenario())
        reads = metric(client.http, "gateway_break_glass_reads_total")
    finally:
        run(env, lambda c: expire_break_glass(c, grant))
    assert [first, second] == [
        plain_event(env, "current", consultation),
        plain_event(env, "updated", consultation),
    ]
    assert_no_foreign(env, messages, {cy})
    disclosed = [e for e in audit_since(env, since, subject) if e["kind"] == "disclosure"]
    assert [(e["patient_id"], e["break_glass_reason"]) for e in disclosed] == [(cy, REASON)] * 2
    assert reads == before + 2
    log = client.execute(
        "{ accessLog(first: 2) { edges { node { kind accessorSubject breakGlassReason "
        "objects { type id } } } } }",
        env.token(world.subject("cy")),
    )["data"]["accessLog"]["edges"]
    objects = (
        [{"type": "Consultation", "id": gid("Consultation", consultation)}]
        + [{"type": "Patient", "id": gid("Patient", cy)}]
        + [
            {"type": "Recording", "id": gid("Recording", r)}
            for r in sorted(world.recordings[consultation], key=str)
        ]
    )
    assert [e["node"] for e in log] == [
        {
            "kind": "DISCLOSURE",
            "accessorSubject": subject,
            "breakGlassReason": REASON,
            "objects": objects,
        }
    ] * 2
