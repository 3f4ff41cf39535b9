"""The audit trail: every disclosure and denial recorded before the response, in one round trip;
fail closed; append-only; tamper-evident; readable by the patient; exportable as FHIR."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from gateway import create_app
from gateway.data.pool import Database
from gateway.data.queries import RECORD_ACCESS_EVENTS
from gateway.ids import encode_global_id
from tests.support import GraphQLClient, as_admin, run_gateway, serving

ROOT = Path(__file__).resolve().parents[1]
LOG = """{ accessLog(first: 50) { edges { node {
    occurredAt kind accessorRole accessorSubject accessorName breakGlassReason
    objects { type id fields } } } } }"""


_admin = as_admin


def _events(env, request_id):
    return _admin(
        env,
        lambda c: c.fetch(
            "select kind, subject, role, patient_id, objects::text as objects from "
            "data.access_events where request_id = $1 order by seq",
            request_id,
        ),
    )


def test_a_patient_sees_their_own_read_in_their_access_log_with_the_fields(env, client):
    subject, patient = env.patients()[6]
    consultation = sorted(env.truth.consultations_of_patient[patient])[0]
    gid = encode_global_id("Consultation", consultation)
    token = env.token(subject)
    client.execute(
        "query($id: ID!) { consultation(id: $id) { id reason summary } }", token, {"id": gid}
    )
    body = client.execute(LOG, token)
    first = body["data"]["accessLog"]["edges"][0]["node"]
    assert first["kind"] == "DISCLOSURE"
    assert first["accessorRole"] == "PATIENT"
    assert first["accessorSubject"] == subject
    assert first["objects"] == [
        {"type": "Consultation", "id": gid, "fields": ["id", "reason", "summary"]}
    ]


def test_a_clinicians_read_shows_in_the_patients_log_with_the_clinicians_name(env, client):
    subject, clinician = env.clinicians()[1]
    consultation = sorted(env.truth.consultations_of_clinician[clinician])[0]
    patient = env.truth.owner_of[consultation]
    patient_subject = next(s for s, p in env.patients() if p == patient)
    client.execute(
        "query($id: ID!) { consultation(id: $id) { clinicianNotes } }",
        env.token(subject),
        {"id": encode_global_id("Consultation", consultation)},
    )
    log = client.execute(LOG, env.token(patient_subject))["data"]["accessLog"]["edges"]
    entry = next(e["node"] for e in log if e["node"]["accessorSubject"] == subject)
    assert entry["accessorRole"] == "CLINICIAN"
    assert entry["accessorName"].startswith("Dr ")
    assert entry["objects"][0]["fields"] == ["clinicianNotes"]


def test_an_access_log_holds_only_events_about_its_own_patient(env, client):
    (subject_a, _), (subject_b, patient_b) = env.patients()[7], env.patients()[8]
    client.execute("{ consultations { edges { node { id reason } } } }", env.token(subject_a))
    log = client.execute(LOG, env.token(subject_b))["data"]["accessLog"]["edges"]
    own = {
        encode_global_id("Consultation", pk) for pk in env.truth.consultations_of_patient[patient_b]
    }
    own |= {encode_global_id("Recording", pk) for pk in env.truth.recordings_of_patient[patient_b]}
    own.add(encode_global_id("Patient", patient_b))
    # The patient's own consents too (another test may have had this patient grant one).
    consents = _admin(
        env, lambda c: c.fetch("select id from data.consents where patient_id = $1", patient_b)
    )
    own |= {encode_global_id("Consent", row["id"]) for row in consents}
    for entry in log:
        assert entry["node"]["accessorSubject"] != subject_a
        for item in entry["node"]["objects"]:
            # Reads of the access log itself are logged by the event's seq.
            assert item["type"] in ("AccessEvent", "AccessedObject") or item["id"] in own


def test_a_clinician_has_no_access_log_of_their_own(env, client):
    body = client.execute(LOG, env.token(env.clinicians()[0][0]))
    assert body == {"data": {"accessLog": {"edges": []}}}


def test_denials_are_recorded_with_the_denied_field(env, client):
    subject, patient = env.patients()[9]
    response = client.post(
        "{ consultations(first: 1) { edges { node { clinicianNotes } } } }",
        env.token(subject),
        **{"x-request-id": "denial-test-1"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    events = _events(env, "denial-test-1")
    denial = next(e for e in events if e["kind"] == "denial")
    assert denial["patient_id"] == patient
    assert '"fields": ["clinicianNotes"]' in denial["objects"]


class CountingDatabase(Database):
    """The real edge, counting audit writes."""

    def __init__(self, inner_settings):
        self._settings = inner_settings
        self._inner = None
        self.audit_writes = 0

    async def _open(self):
        if self._inner is None:
            self._inner = await Database.connect(self._settings)

    async def fetch(self, statement, *args):
        await self._open()
        return await self._inner.fetch(statement, *args)

    async def execute(self, statement, *args):
        await self._open()
        if statement == RECORD_ACCESS_EVENTS:
            self.audit_writes += 1
        return await self._inner.execute(statement, *args)


def test_a_request_writes_its_events_in_one_round_trip_grouped_by_patient(env):
    subject, clinician = env.clinicians()[2]
    database = CountingDatabase(env.settings())
    with serving(create_app(env.settings(), database=database)) as server:
        client = GraphQLClient(server.url)
        response = client.post(
            "{ consultations(first: 100) { edges { node { id reason recordings { id } } } } }",
            env.token(subject),
            **{"x-request-id": "one-round-trip"},
        )
    assert response.status_code == 200
    assert database.audit_writes == 1
    events = _events(env, "one-round-trip")
    assert {e["kind"] for e in events} == {"disclosure"}
    assert sorted(e["patient_id"] for e in events) == sorted(
        env.truth.patients_of_clinician[clinician]
    )
    for event in events:
        objects = json.loads(event["objects"])
        listed = {uuid.UUID(o["id"]) for o in objects if o["type"] == "Consultation"}
        assert listed == {
            pk
            for pk in env.truth.consultations_of_clinician[clinician]
            if env.truth.owner_of[pk] == event["patient_id"]
        }


def test_when_the_audit_write_fails_the_response_carries_no_data(env, client):
    subject, _ = env.patients()[10]
    _admin(env, lambda c: c.execute("revoke insert on data.access_events from gateway_app"))
    try:
        response = client.post(
            "{ consultations { edges { node { id reason } } } }", env.token(subject)
        )
    finally:
        _admin(env, lambda c: c.execute("grant insert on data.access_events to gateway_app"))
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json() == {
        "errors": [
            {
                "message": "Response withheld: the audit trail could not be written",
                "extensions": {"code": "AUDIT_UNAVAILABLE"},
            }
        ]
    }


def test_the_application_role_cannot_change_or_delete_events(env):
    async def attempt(connection, statement):
        try:
            await connection.execute(statement)
        except asyncpg.InsufficientPrivilegeError as exc:
            return type(exc).__name__
        return "allowed"

    async def work():
        connection = await asyncpg.connect(env.app_url)
        try:
            return [
                await attempt(connection, s)
                for s in (
                    "update data.access_events set subject = 'x'",
                    "delete from data.access_events",
                    "truncate data.access_events",
                    "update data.audit_chain_head set last_seq = 0",
                )
            ]
        finally:
            await connection.close()

    assert asyncio.run(work()) == ["InsufficientPrivilegeError"] * 4


def test_even_the_owner_cannot_change_events_while_the_trigger_stands(env):
    for statement in (
        "update data.access_events set subject = 'x' where seq = 1",
        "delete from data.access_events where seq = 1",
        "truncate data.access_events",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            _admin(env, lambda c, s=statement: c.execute(s))


gateway = run_gateway


def test_audit_verify_passes_on_the_real_log_and_names_the_row_a_superuser_altered(env, client):
    client.execute("{ consultations { edges { node { id } } } }", env.token(env.patients()[0][0]))
    intact = gateway("audit", "verify", "--database-url", env.admin_url)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith("audit chain intact: ")
    assert int(intact.stdout.split(": ")[1].split()[0]) > 0

    async def tamper(connection, subject):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            return await connection.fetchrow(
                "update data.access_events set subject = $1 where seq = 3 "
                "returning seq, id, (select subject from data.access_events where seq = 3) "
                "as original",
                subject,
            )

    row = _admin(env, lambda c: tamper(c, "someone-else"))
    try:
        broken = gateway("audit", "verify", "--database-url", env.admin_url)
    finally:
        _admin(env, lambda c: tamper(c, row["original"]))
    assert broken.returncode == 1
    assert broken.stderr == (
        f"gateway: audit chain broken at seq 3 (event id {row['id']}): contents were altered\n"
    )
    assert gateway("audit", "verify", "--database-url", env.admin_url).returncode == 0


def test_audit_verify_notices_events_deleted_from_the_end(env):
    async def remove_last(connection):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute(
                "create table public.removed_event as select * from data.access_events "
                "where seq = (select max(seq) from data.access_events)"
            )
            await connection.execute(
                "delete from data.access_events where seq = (select seq from removed_event)"
            )
        return await connection.fetchval("select seq from removed_event")

    async def restore(connection):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute(
                "insert into data.access_events overriding system value select * from removed_event"
            )
            await connection.execute("drop table removed_event")

    seq = _admin(env, remove_last)
    try:
        result = gateway("audit", "verify", "--database-url", env.admin_url)
    finally:
        _admin(env, restore)
    assert result.returncode == 1
    assert result.stderr == (
        f"gateway: audit chain broken after seq {seq - 1}: events were removed\n"
    )
    assert gateway("audit", "verify", "--database-url", env.admin_url).returncode == 0


def test_audit_export_writes_valid_fhir_r4_audit_events(env, client, tmp_path):
    subject, _ = env.patients()[11]
    client.execute(
        "{ consultations { edges { node { id recordings { playbackUrl } } } } }", env.token(subject)
    )
    output = tmp_path / "events.ndjson"
    result = gateway(
        "audit",
        "export",
        "--database-url",
        env.admin_url,
        "--since",
        "2020-01-01",
        "--format",
        "fhir",
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    lines = output.read_text().splitlines()
    assert result.stderr == f"exported {len(lines)} events\n"
    events = [json.loads(line) for line in lines]
    for event in events:
        AuditEvent.model_validate(event)
    mine = [e for e in events if e["agent"][0]["who"]["identifier"]["value"] == subject]
    assert mine and mine[-1]["entity"][0]["what"]["reference"].startswith("Patient/")
    assert any(
        d["valueString"] == "playbackUrl"
        for e in mine
        for entity in e["entity"]
        for d in entity.get("detail", [])
    )


def test_concurrent_batches_each_append_one_contiguous_run_of_the_chain(env):
    """Three statements of 200 events each, at once (a support page over many patients, three
    replicas): each holds the chain for its whole batch, so its events are consecutive; the head
    ends at the newest event, and verify recomputes every hash."""
    patients = [patient for _, patient in env.patients()]

    def batch(number: int) -> str:
        return json.dumps(
            [
                {
                    "request_id": f"batch-{number}",
                    "kind": "disclosure",
                    "issuer": "urn:test",
                    "subject": "support-batch",
                    "role": "support",
                    "patient_id": str(patients[index % len(patients)]),
                    "objects": [{"type": "Consultation", "id": str(uuid.uuid4()), "fields": []}],
                }
                for index in range(200)
            ]
        )

    async def write() -> None:
        database = await Database.connect(env.settings(db_pool_max_size=3))
        try:
            await asyncio.gather(
                *(database.execute(RECORD_ACCESS_EVENTS, batch(n)) for n in range(3))
            )
        finally:
            await database.close()

    asyncio.run(write())
    rows = _admin(
        env,
        lambda c: c.fetch(
            "select request_id, seq from data.access_events where request_id like 'batch-%' "
            "order by seq"
        ),
    )
    assert len(rows) == 600
    for number in range(3):
        seqs = [r["seq"] for r in rows if r["request_id"] == f"batch-{number}"]
        assert seqs == list(range(seqs[0], seqs[0] + 200))
    head = _admin(env, lambda c: c.fetchval("select last_seq from data.audit_chain_head"))
    newest = _admin(env, lambda c: c.fetchval("select max(seq) from data.access_events"))
    assert head == newest
    verified = gateway("audit", "verify", "--database-url", env.admin_url)
    assert verified.returncode == 0, verified.stderr


def test_audit_export_writes_changes_of_access_as_fhir_events_too(env, client, tmp_path):
    """Consents granted and revoked and break-glass opened are in the trail; the export must
    carry them as valid AuditEvents (create or update, succeeded), not stop at the first one."""
    from tests.test_roles import REASON, _grant, _new_partner, _open

    patient_subject, patient = env.patients()[10]
    _, partner_id = _new_partner(env)
    token = env.token(patient_subject)
    consent = _grant(client, token, partner_id, ["patient/Consultation.rs"])
    consent_id = consent["data"]["grantConsent"]["id"]
    revoke = "mutation($id: ID!) { revokeConsent(id: $id) { id } }"
    client.execute(revoke, token, {"id": consent_id})
    clinician_subject = _new_clinician(env)  # a seeded one would keep the grant, for others
    assert _open(client, env.token(clinician_subject), patient)["data"]["openBreakGlass"]

    output = tmp_path / "events.ndjson"
    result = gateway(
        "audit", "export", "--database-url", env.admin_url, "--since", "2020-01-01",
        "--format", "fhir", "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in output.read_text().splitlines()]
    for event in events:
        AuditEvent.model_validate(event)
    changes = {
        (e["agent"][0]["who"]["identifier"]["value"], e["outcomeDesc"]): (e["action"], e["outcome"])
        for e in events
        if e.get("outcomeDesc") in ("consent granted", "consent revoked", "break-glass opened")
    }
    assert changes[(patient_subject, "consent granted")] == ("C", "0")
    assert changes[(patient_subject, "consent revoked")] == ("U", "0")
    assert changes[(clinician_subject, "break-glass opened")] == ("C", "0")
    opened = next(
        e
        for e in events
        if e.get("outcomeDesc") == "break-glass opened"
        and e["agent"][0]["who"]["identifier"]["value"] == clinician_subject
    )
    assert opened["purposeOfEvent"][0]["text"] == f"break-glass: {REASON}"
    assert opened["entity"][0]["what"]["reference"] == f"Patient/{patient}"


def _new_clinician(env) -> str:
    """A fresh clinician account: its subject."""
    pk = uuid.uuid4()

    async def make(connection):
        await connection.execute(
            "insert into data.clinicians values ($1, 'Dr Export', 'Emergency')", pk
        )
        await connection.execute(
            "insert into data.accounts (issuer, subject, role, clinician_id) "
            "values ($1, $2, 'clinician', $3)",
            env.identity.issuer,
            f"clinician-{pk}",
            pk,
        )

    _admin(env, make)
    return f"clinician-{pk}"
