"""The audit trail: every disclosure and denial recorded before the response, in one round trip;
fail closed; append-only; tamper-evident; readable by the patient; exportable as FHIR."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path

import asyncpg
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from gateway import create_app
from gateway.audit.events import expand_objects
from gateway.audit.fhir import to_audit_event
from gateway.data.pool import Database
from gateway.data.queries import RECORD_ACCESS_EVENTS, STATEMENT_NAMES
from gateway.ids import encode_global_id
from tests.support.database import as_admin
from tests.support.gateway_process import run_gateway
from tests.support.released import migrate_as_released
from tests.support.server import GraphQLClient, serving

ROOT = Path(__file__).resolve().parents[1]
LOG = """{ accessLog(first: 50) { edges { node {
    occurredAt kind accessorRole accessorSubject accessorName breakGlassReason
    objects { type id fields } } } } }"""


_admin = as_admin
# The audit write as it was before migration 0016 (its ids as JSON), for databases migrated
# only that far.
BEFORE_0016 = "select api.record_access_events($1::jsonb)"


def _events(env, request_id):
    return _admin(
        env,
        lambda c: c.fetch(
            "select kind, subject, role, patient_id, "
            "data.event_objects(access_events)::text as objects from "
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
    """The real edge, counting statements by their name in queries.py."""

    def __init__(self, inner_settings):
        self._settings = inner_settings
        self._inner = None
        self.sent: dict[str, int] = {}

    async def _open(self):
        if self._inner is None:
            self._inner = await Database.connect(self._settings)

    def _count(self, statement):
        name = STATEMENT_NAMES.get(statement, statement)
        self.sent[name] = self.sent.get(name, 0) + 1

    async def fetch(self, statement, *args):
        await self._open()
        self._count(statement)
        return await self._inner.fetch(statement, *args)

    async def execute(self, statement, *args):
        await self._open()
        self._count(statement)
        return await self._inner.execute(statement, *args)


def test_a_clinicians_page_is_checked_and_audited_in_one_round_trip_grouped_by_patient(env):
    """A clinician's page needs the database's answer on care (layer 4); it travels with the
    audit write, which stores the events only when the answer holds: one statement for both."""
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
    assert database.sent.get("RECORD_ACCESS_EVENTS_IF_AUTHORIZED") == 1
    assert "RECORD_ACCESS_EVENTS" not in database.sent
    assert "AUTHORIZED_PATIENTS" not in database.sent
    events = _events(env, "one-round-trip")
    assert {e["kind"] for e in events} == {"disclosure"}
    assert sorted(e["patient_id"] for e in events) == sorted(
        env.truth.patients_of_clinician[clinician]
    )
    for event in events:
        objects = expand_objects(json.loads(event["objects"]))
        listed = {uuid.UUID(o["id"]) for o in objects if o["type"] == "Consultation"}
        assert listed == {
            pk
            for pk in env.truth.consultations_of_clinician[clinician]
            if env.truth.owner_of[pk] == event["patient_id"]
        }


def test_when_the_audit_write_fails_the_response_carries_no_data(env, client, caplog):
    """Nothing is sent; the operator sees the failure counted and logged with the request, the
    events lost and the database's error."""
    from tests.test_metrics import scrape, value

    subject, _ = env.patients()[10]

    def failures() -> float:
        return value(scrape(client.http), "gateway_audit_writes_total", outcome="failed")

    before = failures()
    _admin(env, lambda c: c.execute("revoke insert on data.access_events from gateway_app"))
    try:
        with caplog.at_level(logging.INFO, logger="gateway.audit"):
            response = client.post(
                "{ consultations { edges { node { id reason } } } }", env.token(subject)
            )
    finally:
        _admin(env, lambda c: c.execute("grant insert on data.access_events to gateway_app"))
    assert failures() - before == 1
    [logged] = [r for r in caplog.records if r.name == "gateway.audit"]
    assert (logged.levelno, logged.getMessage()) == (
        logging.ERROR,
        "audit write failed; response withheld",
    )
    assert (logged.request_id, logged.events, logged.kinds) == (
        response.headers["x-request-id"],
        1,
        ["disclosure"],
    )
    assert isinstance(logged.exc_info[1], asyncpg.InsufficientPrivilegeError)
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
                    "update data.audit_chains set last_seq = 0",
                )
            ]
        finally:
            await connection.close()

    assert asyncio.run(work()) == ["InsufficientPrivilegeError"] * 5


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
    intact = gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith("audit chain intact: ")
    assert int(intact.stdout.split(": ")[1].split()[0]) > 0

    async def tamper(connection, subject):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            return await connection.fetchrow(
                "with target as (select id, subject from data.access_events "
                "where chain_id is not null order by seq limit 1) "
                "update data.access_events e set subject = $1 from target where e.id = target.id "
                "returning e.id, e.chain_id, e.chain_seq, target.subject as original",
                subject,
            )

    row = _admin(env, lambda c: tamper(c, "someone-else"))
    try:
        broken = gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    finally:
        _admin(env, lambda c: tamper(c, row["original"]))
    assert broken.returncode == 1
    assert broken.stderr == (
        f"gateway: audit chain broken at chain {row['chain_id']} position {row['chain_seq']} "
        f"(event id {row['id']}): contents were altered\n"
    )
    assert gateway("audit", "verify", "--full", "--database-url", env.admin_url).returncode == 0


@pytest.mark.parametrize(
    "change",
    [
        # one id replaced by another object's: the record now names the wrong object
        "object_ids = array_replace(e.object_ids, e.object_ids[1], gen_random_uuid())",
        # two ids swapped: the same ids, each under the other's place (and fields)
        "object_ids = e.object_ids[2:2] || e.object_ids[1:1] || e.object_ids[3:]",
        # two groups' counts swapped: ids moved from one type and field set to another
        "object_counts = e.object_counts[2:2] || e.object_counts[1:1] || e.object_counts[3:]",
        # a group's field set replaced by another's
        "object_sets = e.object_sets[2:2] || e.object_sets[1:1] || e.object_sets[3:]",
        # a group naming a set that does not exist added, counting nothing
        "object_sets = e.object_sets || 999999, object_counts = e.object_counts || 0",
        # an extra count with no set: the groups no longer add up
        "object_counts = e.object_counts || 5",
    ],
)
def test_a_compact_record_is_covered_by_its_chain_hash(env, client, change):
    """Attack: a superuser alters what a compactly stored disclosure says was read (its ids, or
    its groups' fields), without touching the JSON. Expected: ``gateway audit verify`` names
    the event, "contents were altered"; restored, the trail verifies."""
    patient = env.patients()[0][0]
    client.execute(
        "{ consultations(first: 3) { edges { node { id reason patient { displayName } } } } }",
        env.token(patient),
    )

    async def alter(connection):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            return await connection.fetchrow(
                "with target as (select id, object_ids, object_sets, object_counts "
                "from data.access_events where cardinality(object_ids) >= 3 "
                "and cardinality(object_sets) >= 2 order by seq desc limit 1) "
                f"update data.access_events e set {change} from target "
                "where e.id = target.id returning e.id, e.chain_id, e.chain_seq, "
                "target.object_ids as ids, target.object_sets as sets, "
                "target.object_counts as counts",
            )

    row = _admin(env, alter)
    try:
        broken = gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    finally:
        _admin(env, lambda c: _restore(c, row["id"], row["ids"], row["sets"], row["counts"]))
    assert broken.returncode == 1
    assert broken.stderr == (
        f"gateway: audit chain broken at chain {row['chain_id']} position {row['chain_seq']} "
        f"(event id {row['id']}): contents were altered\n"
    )
    assert gateway("audit", "verify", "--full", "--database-url", env.admin_url).returncode == 0


async def _restore(connection, event, ids, sets, counts) -> None:
    async with connection.transaction():
        await connection.execute("set local session_replication_role = replica")
        await connection.execute(
            "update data.access_events set object_ids = $2, object_sets = $3, "
            "object_counts = $4 where id = $1",
            event,
            ids,
            sets,
            counts,
        )


def test_a_field_set_changed_after_the_fact_breaks_every_event_that_names_it(env, client):
    """Attack: a superuser rewrites one of the shared field sets (data.audit_field_sets), so
    that every disclosure naming it would say other fields were read. Expected: the field sets
    refuse the change (append-only); forced past that, ``gateway audit verify`` names the first
    event that names the set, "contents were altered"; restored, the trail verifies."""
    client.execute(
        "{ consultations(first: 2) { edges { node { id reason } } } }",
        env.token(env.patients()[1][0]),
    )

    async def refused(connection):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute("update data.audit_field_sets set fields = '{id}'")

    _admin(env, refused)

    async def rewrite(connection):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            return await connection.fetchrow(
                "with target as (select s.id, s.fields from data.audit_field_sets s "
                "where s.type_name = 'Consultation' and s.fields @> '{reason}' "
                "order by s.id limit 1) update data.audit_field_sets f "
                "set fields = array_remove(f.fields, 'reason') || '{not-read}'::text[] "
                "from target where f.id = target.id returning f.id, target.fields as original",
            )

    async def restore(connection, set_id, fields):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute(
                "update data.audit_field_sets set fields = $2 where id = $1", set_id, fields
            )

    row = _admin(env, rewrite)
    try:
        broken = gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    finally:
        _admin(env, lambda c: restore(c, row["id"], row["original"]))
    assert broken.returncode == 1
    assert broken.stderr.startswith("gateway: audit chain broken at chain ")
    assert broken.stderr.endswith(": contents were altered\n")
    assert gateway("audit", "verify", "--full", "--database-url", env.admin_url).returncode == 0


def test_audit_verify_notices_events_deleted_from_the_end_of_a_chain(env):
    async def remove_last(connection):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute(
                "create table public.removed_event as select * from data.access_events "
                "where chain_id is not null order by seq desc limit 1"
            )
            await connection.execute(
                "delete from data.access_events where id = (select id from removed_event)"
            )
        return await connection.fetchrow("select chain_id, chain_seq from removed_event")

    async def restore(connection):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute(
                "insert into data.access_events overriding system value select * from removed_event"
            )
            await connection.execute("drop table removed_event")

    removed = _admin(env, remove_last)
    try:
        result = gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    finally:
        _admin(env, restore)
    assert result.returncode == 1
    assert result.stderr == (
        f"gateway: audit chain broken after chain {removed['chain_id']} position "
        f"{removed['chain_seq'] - 1}: events were removed\n"
    )
    assert gateway("audit", "verify", "--full", "--database-url", env.admin_url).returncode == 0


def test_audit_verify_notices_an_event_removed_from_the_middle_of_a_chain(env, client):
    for subject, _ in env.patients()[:3]:
        client.execute("{ consultations { edges { node { id } } } }", env.token(subject))

    async def remove_middle(connection):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute(
                "create table public.removed_event as select e.* from data.access_events e "
                "join data.audit_chains c on c.id = e.chain_id "
                "where e.chain_seq < c.last_seq order by e.seq desc limit 1"
            )
            await connection.execute(
                "delete from data.access_events where id = (select id from removed_event)"
            )
        return await connection.fetchrow("select chain_id, chain_seq from removed_event")

    async def restore(connection):
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute(
                "insert into data.access_events overriding system value select * from removed_event"
            )
            await connection.execute("drop table removed_event")

    removed = _admin(env, remove_middle)
    try:
        result = gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    finally:
        _admin(env, restore)
    assert result.returncode == 1
    assert result.stderr == (
        f"gateway: audit chain broken at chain {removed['chain_id']} position "
        f"{removed['chain_seq']}: event missing\n"
    )


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


def test_concurrent_batches_each_append_one_contiguous_run_of_a_chain_of_their_own(env):
    """Three statements of 200 events each, at once (a support page over many patients, three
    replicas): none waits for another. Each takes a chain nobody else holds and its events are
    consecutive in it; every chain's head ends at its newest event, and verify recomputes every
    hash."""
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
                *(database.execute(RECORD_ACCESS_EVENTS, batch(n), []) for n in range(3))
            )
        finally:
            await database.close()

    asyncio.run(write())
    rows = _admin(
        env,
        lambda c: c.fetch(
            "select request_id, chain_id, chain_seq from data.access_events "
            "where request_id like 'batch-%' order by chain_id, chain_seq"
        ),
    )
    assert len(rows) == 600
    for number in range(3):
        run = [r for r in rows if r["request_id"] == f"batch-{number}"]
        assert len({r["chain_id"] for r in run}) == 1
        positions = [r["chain_seq"] for r in run]
        assert positions == list(range(positions[0], positions[0] + 200))
    heads = _admin(
        env,
        lambda c: c.fetch(
            "select c.last_seq, (select max(e.chain_seq) from data.access_events e "
            "where e.chain_id = c.id) as newest from data.audit_chains c"
        ),
    )
    assert all(h["last_seq"] == (h["newest"] or 0) for h in heads)
    verified = gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    assert verified.returncode == 0, verified.stderr


def test_audit_export_writes_changes_of_access_as_fhir_events_too(env, client, tmp_path):
    """Consents granted and revoked and break-glass opened are in the trail; the export must
    carry them as valid AuditEvents (create or update, succeeded), not stop at the first one."""
    from tests.support.actors import REASON, new_clinician
    from tests.test_roles import _grant, _new_partner, _open

    patient_subject, patient = env.patients()[10]
    _, partner_id = _new_partner(env)
    token = env.token(patient_subject)
    consent = _grant(client, token, partner_id, ["patient/Consultation.rs"])
    consent_id = consent["data"]["grantConsent"]["id"]
    revoke = "mutation($id: ID!) { revokeConsent(id: $id) { id } }"
    client.execute(revoke, token, {"id": consent_id})
    # A new clinician: a seeded one would keep the grant, for others.
    clinician_subject, _ = new_clinician(env, "audit")
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


def test_a_writer_takes_a_free_chain_while_another_holds_one(env):
    """Holding a chain's head (a slow writer) does not make the next write wait."""
    patient = env.patients()[0][1]
    event = json.dumps(
        [
            {
                "request_id": "free-chain",
                "kind": "disclosure",
                "issuer": "urn:test",
                "subject": "s",
                "role": "support",
                "patient_id": str(patient),
            }
        ]
    )

    async def work():
        holder = await asyncpg.connect(env.admin_url)
        writer = await asyncpg.connect(env.app_url)
        try:
            async with holder.transaction():
                held = await holder.fetchval(
                    "select id from data.audit_chains order by id limit 1 for update"
                )
                await writer.execute("set statement_timeout = 2000")
                await writer.execute(RECORD_ACCESS_EVENTS, event, [])
                return held, await holder.fetchval(
                    "select chain_id from data.access_events where request_id = 'free-chain'"
                )
        finally:
            await holder.close()
            await writer.close()

    held, used = asyncio.run(work())
    assert used is not None and used != held


def test_events_written_before_the_chains_still_verify_as_the_first_chain(env):
    """A database migrated before 0012 keeps its events in the one chain they were written in;
    verify checks them by the old definition and every new chain beside them, and still names
    an old event that was altered."""
    from gateway.audit.chain import verify_chain
    from gateway.data.migrate import apply_migrations

    name = f"gateway_chains_{uuid.uuid4().hex[:8]}"
    event = json.dumps(
        [
            {
                "request_id": "old",
                "kind": "disclosure",
                "issuer": "urn:test",
                "subject": "s",
                "role": "support",
                "objects": [],
            }
        ]
        * 3
    )

    async def work():
        admin = await asyncpg.connect(env.admin_url)
        await admin.execute(f'create database "{name}"')
        url = env.admin_url.rsplit("/", 1)[0] + f"/{name}"
        connection = await asyncpg.connect(url)
        try:
            await migrate_as_released(connection, before="0012")
            await connection.execute(BEFORE_0016, event)
            await apply_migrations(connection)
            await connection.execute(RECORD_ACCESS_EVENTS, event.replace('"old"', '"new"'), [])
            chained = await connection.fetch(
                "select request_id, chain_id is not null as chained from data.access_events "
                "order by seq"
            )
            intact = await verify_chain(connection)
            async with connection.transaction():
                await connection.execute("set local session_replication_role = replica")
                await connection.execute(
                    "update data.access_events set subject = 'x' where seq = 2"
                )
            broken = await verify_chain(connection)
            return chained, intact, broken
        finally:
            await connection.close()
            await admin.execute(f'drop database "{name}"')
            await admin.close()

    chained, intact, broken = asyncio.run(work())
    assert [(r["request_id"], r["chained"]) for r in chained] == [("old", False)] * 3 + [
        ("new", True)
    ] * 3
    assert (intact.intact, intact.events) == (True, 6)
    assert not broken.intact and broken.message.startswith("broken at seq 2 (event id ")


# --- the chains' verification in process, every way a chain can break -------------------------


@pytest.fixture(scope="module")
def chains(env):
    yield from _chains_database(env)


@pytest.fixture
def live_chains(env):
    """A database as ``chains`` makes it, for a test that writes to it."""
    yield from _chains_database(env)


def _chains_database(env):
    """A database of its own migrated before 0012 with three events, then to the end with three
    more: the first chain (by seq) and one of the chains (by position), each of three."""
    from gateway.data.migrate import apply_migrations

    name = f"gateway_verify_{uuid.uuid4().hex[:8]}"
    url = env.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def events(request_id):
        return json.dumps(
            [
                {
                    "request_id": request_id,
                    "kind": "disclosure",
                    "issuer": "urn:test",
                    "subject": f"s{n}",
                    "role": "support",
                    "objects": [{"type": "Consultation", "id": str(n), "fields": ["id"]}],
                }
                for n in range(3)
            ]
        )

    async def make():
        admin = await asyncpg.connect(env.admin_url)
        try:
            await admin.execute(f'create database "{name}"')
        finally:
            await admin.close()
        connection = await asyncpg.connect(url)
        try:
            await migrate_as_released(connection, before="0012")
            await connection.execute(BEFORE_0016, events("old"))
            await apply_migrations(connection)
            await connection.execute(RECORD_ACCESS_EVENTS, events("new"), [])
        finally:
            await connection.close()

    asyncio.run(make())
    yield url

    async def drop():
        admin = await asyncpg.connect(env.admin_url)
        try:
            await admin.execute(f'drop database "{name}" with (force)')
        finally:
            await admin.close()

    asyncio.run(drop())


async def _verify_after(url: str, tamper: str, *args):
    """verify_chain's report with ``tamper`` applied as a superuser, then undone (a rolled-back
    transaction would hide it from verify's own snapshot, so it is undone by hand)."""
    from gateway.audit.chain import verify_chain

    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "select * from data.access_events order by chain_id nulls first, chain_seq, seq"
        )
        heads = await connection.fetch("select * from data.audit_chains")
        head = await connection.fetchrow("select * from data.audit_chain_head")
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute(tamper, *args)
        try:
            report = await verify_chain(connection)
        finally:
            async with connection.transaction():
                await connection.execute("set local session_replication_role = replica")
                await connection.execute("delete from data.access_events")
                columns = list(rows[0].keys())
                await connection.copy_records_to_table(
                    "access_events", schema_name="data", records=rows, columns=columns
                )
                for row in heads:
                    await connection.execute(
                        "update data.audit_chains set last_seq = $2, last_hash = $3 where id = $1",
                        row["id"],
                        row["last_seq"],
                        row["last_hash"],
                    )
                await connection.execute(
                    "insert into data.audit_chain_head (id, last_seq, last_hash) "
                    "values (1, $1, $2) on conflict (id) do update "
                    "set last_seq = excluded.last_seq, last_hash = excluded.last_hash",
                    head["last_seq"],
                    head["last_hash"],
                )
        return rows, report, await verify_chain(connection)
    finally:
        await connection.close()


def _old(rows, n):
    return [r for r in rows if r["chain_id"] is None][n]


def _new(rows, n):
    return [r for r in rows if r["chain_id"] is not None][n]


def test_verify_walks_both_kinds_of_chain_and_counts_every_event(chains):
    _, report, _ = asyncio.run(_verify_after(chains, "select 1"))
    assert report == type(report)(True, 6, "audit chain intact: 6 events")


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            "update data.access_events set subject = 'x' where seq = 2",
            lambda rows: (2 - 1, f"broken at seq 2 (event id {_old(rows, 1)['id']}): "
                          "contents were altered"),
        ),
        (
            "update data.access_events set prev_hash = hash where seq = 3",
            lambda rows: (2, f"broken at seq 3 (event id {_old(rows, 2)['id']}): "
                          "does not follow seq 2"),
        ),
        (
            "delete from data.access_events where seq = 2",
            lambda rows: (1, "broken at seq 2: event missing"),
        ),
        (
            "delete from data.access_events where seq = 3",
            lambda rows: (2, "broken after seq 2: events were removed"),
        ),
        (
            "update data.audit_chain_head set last_hash = '\\x00'",
            lambda rows: (
                3, "broken at seq 3: the chain's head row differs from the hash verified there"
            ),
        ),
        (
            "delete from data.audit_chain_head",
            lambda rows: (3, "broken after seq 3: events were removed"),
        ),
        (
            "update data.access_events set detail = '{\"x\": 1}' "
            "where chain_id is not null and chain_seq = 2",
            lambda rows: (
                3 + 1,
                f"broken at chain {_new(rows, 1)['chain_id']} position 2 "
                f"(event id {_new(rows, 1)['id']}): contents were altered",
            ),
        ),
        (
            "update data.access_events set prev_hash = hash "
            "where chain_id is not null and chain_seq = 3",
            lambda rows: (
                3 + 2,
                f"broken at chain {_new(rows, 2)['chain_id']} position 3 "
                f"(event id {_new(rows, 2)['id']}): does not follow position 2",
            ),
        ),
        (
            "delete from data.access_events where chain_id is not null and chain_seq = 2",
            lambda rows: (
                3 + 1,
                f"broken at chain {_new(rows, 1)['chain_id']} position 2: event missing",
            ),
        ),
        (
            "delete from data.access_events where chain_id is not null and chain_seq = 3",
            lambda rows: (
                3 + 2,
                f"broken after chain {_new(rows, 2)['chain_id']} position 2: events were removed",
            ),
        ),
        (
            "update data.access_events set chain_id = 999 "
            "where chain_id is not null and chain_seq = 3",
            lambda rows: (
                3 + 2,
                f"broken at chain 999 position 3 (event id {_new(rows, 2)['id']}): no such chain",
            ),
        ),
    ],
    ids=[
        "first-chain-altered",
        "first-chain-relinked",
        "first-chain-middle-removed",
        "first-chain-end-removed",
        "first-chain-head-altered",
        "first-chain-head-deleted",
        "chain-altered",
        "chain-relinked",
        "chain-middle-removed",
        "chain-end-removed",
        "chain-unknown",
    ],
)  # fmt: skip
def test_verify_names_the_first_broken_link_and_the_events_it_counted_before_it(
    chains, tamper, expected
):
    rows, report, after = asyncio.run(_verify_after(chains, tamper))
    assert (report.intact, report.events, report.message) == (False, *expected(rows))
    assert after.intact and after.events == 6  # put back as it was


def test_a_chain_hash_covers_every_field_and_its_position():
    """Each field, and the chain position, changes the hash; a null is not an empty text."""
    from datetime import UTC, datetime

    from gateway.audit.chain import GENESIS, chain_genesis, event_hash

    row = {
        "chain_id": 1,
        "chain_seq": 1,
        "seq": 7,
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "request_id": "r",
        "kind": "disclosure",
        "issuer": "i",
        "subject": "s",
        "role": "patient",
        "actor_id": "a",
        "patient_id": "p",
        "client_id": "c",
        "break_glass_reason": "b",
        "objects": "[]",
        "detail": "{}",
    }
    base = event_hash(GENESIS, row)
    assert len(base) == 32 and base != event_hash(chain_genesis(1), row)
    for key in row:
        changed = dict(row)
        changed[key] = None if key not in ("occurred_at", "chain_id") else changed[key]
        if key == "occurred_at":
            changed[key] = datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC)
        if key == "chain_id":
            changed[key] = 2
        assert event_hash(GENESIS, changed) != base, key
    assert event_hash(GENESIS, {**row, "client_id": ""}) != event_hash(
        GENESIS, {**row, "client_id": None}
    )
    assert chain_genesis(1) != chain_genesis(2) != GENESIS
    # Since migration 0016: the groups and the ids' bytes, after the rest; none, as before.
    from uuid import UUID

    ids = [UUID(int=1), UUID(int=2)]
    compact = {**row, "object_groups": '[["Recording", ["id"], 2]]', "object_ids": ids}
    assert event_hash(GENESIS, {**row, "object_ids": None}) == base
    assert event_hash(GENESIS, compact) != base
    for changed in (
        {"object_ids": ids[::-1]},
        {"object_ids": [UUID(int=1), UUID(int=3)]},
        {"object_groups": '[["Recording", ["mode"], 2]]'},
    ):
        assert event_hash(GENESIS, {**compact, **changed}) != event_hash(GENESIS, compact)


def test_an_event_hash_is_its_canonical_text_in_utc_whatever_the_machines_time_zone(monkeypatch):
    """The canonical form of chain.py's docstring, written out here: "<length>:<text>" per field
    (or "N"), times in UTC to the microsecond; on a machine whose local time is not UTC."""
    import hashlib
    import time
    from datetime import datetime, timedelta, timezone

    from gateway.audit.chain import GENESIS, event_hash

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        row = {
            "chain_id": 3,
            "chain_seq": 9,
            "seq": 70,
            "occurred_at": datetime(2026, 1, 2, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
            "request_id": "r1",
            "kind": "media",
            "issuer": "iss",
            "subject": "sub",
            "role": "patient",
            "actor_id": None,
            "patient_id": "p",
            "client_id": None,
            "break_glass_reason": None,
            "objects": "[]",
            "detail": "{}",
        }
        canonical = (
            "1:31:92:7027:2026-01-02T10:00:00.000005Z2:r15:media3:iss3:sub7:patientN1:pNN2:[]2:{}"
        )
        assert event_hash(GENESIS, row) == hashlib.sha256(GENESIS + canonical.encode()).digest()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def _row(**values):
    from datetime import UTC, datetime

    row = {
        "seq": 41,
        "occurred_at": datetime(2026, 3, 4, 5, 6, 7, 8, tzinfo=UTC),
        "request_id": "req-1",
        "kind": "disclosure",
        "issuer": "https://id.example",
        "subject": "dr-1",
        "role": "clinician",
        "patient_id": "9f1c0f3e-0000-4000-8000-000000000001",
        "client_id": None,
        "break_glass_reason": None,
        "objects": "[]",
    }
    row.update(values)
    return row


def test_a_break_glass_disclosure_by_a_client_is_this_fhir_audit_event():
    """Written out from HL7's AuditEvent codes, not from the code: every element of one event."""
    from gateway.audit.fhir import to_audit_event

    row = _row(
        break_glass_reason="Unconscious on arrival",
        client_id="er-app",
        objects='[{"type": "Consultation", "id": "c1", "fields": ["reason", "summary"]},'
        ' {"type": "Recording", "id": "r1", "fields": []}]',
    )
    event = to_audit_event(row)
    assert event == {
        "resourceType": "AuditEvent",
        "id": "41",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": "read", "display": "read"}
        ],
        "action": "R",
        "recorded": "2026-03-04T05:06:07.000008Z",
        "outcome": "0",
        "purposeOfEvent": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "ETREAT",
                    }
                ],
                "text": "break-glass: Unconscious on arrival",
            }
        ],
        "agent": [
            {
                "type": {
                    "coding": [{"system": "urn:consultation-gateway:role", "code": "clinician"}]
                },
                "who": {"identifier": {"system": "https://id.example", "value": "dr-1"}},
                "requestor": True,
            },
            {
                "who": {"identifier": {"value": "er-app"}},
                "requestor": False,
                "type": {"coding": [{"system": "urn:consultation-gateway:role", "code": "client"}]},
            },
        ],
        "source": {
            "observer": {"display": "consultation-gateway"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": [
            {
                "what": {"reference": "Patient/9f1c0f3e-0000-4000-8000-000000000001"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            },
            {
                "what": {
                    "identifier": {"system": "urn:consultation-gateway:Consultation", "value": "c1"}
                },
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
                "detail": [{"type": "fields", "valueString": "reason,summary"}],
            },
            {
                "what": {
                    "identifier": {"system": "urn:consultation-gateway:Recording", "value": "r1"}
                },
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            },
        ],
        "extension": [{"url": "urn:consultation-gateway:request-id", "valueString": "req-1"}],
    }
    AuditEvent.model_validate(event)


def test_a_fhir_event_is_recorded_in_utc_on_a_machine_whose_time_zone_is_not(monkeypatch):
    import time
    from datetime import UTC, datetime

    from gateway.audit.fhir import to_audit_event

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        event = to_audit_event(_row(occurred_at=datetime(2026, 3, 4, 23, 6, 7, 8, tzinfo=UTC)))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert event["recorded"] == "2026-03-04T23:06:07.000008Z"


@pytest.mark.parametrize(
    ("kind", "action", "subtype", "outcome", "description"),
    [
        ("media", "R", "read", "0", "media served"),
        ("denial", "R", "read", "4", "fields denied"),
        ("alert", "R", "read", "8", "response withheld by the exit check"),
        ("consent-granted", "C", "create", "0", "consent granted"),
        ("consent-revoked", "U", "update", "0", "consent revoked"),
        ("break-glass-opened", "C", "create", "0", "break-glass opened"),
    ],
)
def test_each_kind_of_access_event_has_its_fhir_action_outcome_and_description(
    kind, action, subtype, outcome, description
):
    from gateway.audit.fhir import to_audit_event

    event = to_audit_event(_row(kind=kind, patient_id=None, objects=[]))
    assert (event["action"], event["subtype"][0]["code"], event["outcome"]) == (
        action,
        subtype,
        outcome,
    )
    assert event["subtype"][0]["display"] == subtype
    assert event["outcomeDesc"] == description
    assert event["entity"] == []  # no patient: none named
    assert event["purposeOfEvent"] == [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}
            ]
        }
    ]
    assert len(event["agent"]) == 1
    AuditEvent.model_validate(event)


@pytest.mark.parametrize(
    ("kind", "after", "identifier", "description"),
    [
        (
            "account-changed",
            {"issuer": "https://id.example", "subject": "dr-2", "role": "clinician"},
            {"system": "https://id.example", "value": "dr-2"},
            "account changed by an operator",
        ),
        (
            "partner-changed",
            {"id": "partner-7", "name": "Clinic app"},
            {"system": "urn:consultation-gateway:Partner", "value": "partner-7"},
            "partner changed by an operator",
        ),
    ],
)
@pytest.mark.parametrize("decoded", [False, True], ids=["json-text", "decoded"])
def test_an_operators_change_is_a_fhir_update_naming_what_changed_and_how(
    kind, after, identifier, description, decoded
):
    """An account or partner an operator changed is the event's one entity, named by its own
    identifier (an account by its issuer and subject), with the action taken; its detail read
    as JSON text (asyncpg's default) or already decoded (a connection with a JSON codec)."""
    from gateway.audit.fhir import to_audit_event

    detail = {"action": "disable", "before": None, "after": after}
    event = to_audit_event(
        _row(
            kind=kind,
            role="operator",
            patient_id=None,
            objects=[],
            detail=detail if decoded else json.dumps(detail),
        )
    )
    assert (event["action"], event["subtype"][0]["code"], event["outcomeDesc"]) == (
        "U",
        "update",
        description,
    )
    assert event["entity"] == [
        {
            "what": {"identifier": identifier},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
                "display": "System Object",
            },
            "detail": [{"type": "action", "valueString": "disable"}],
        }
    ]
    AuditEvent.model_validate(event)


def test_verify_during_live_writes_sees_one_snapshot_and_raises_no_false_alarm(live_chains):
    """Verification runs while the gateway writes. Here a write commits at the worst moment:
    after verify read the chains' heads, before it reads their events. Verify reads one snapshot
    (repeatable read), so it reports the trail as it was, intact, and the next run counts the
    new events too."""
    from gateway.audit.chain import verify_chain

    written = []

    async def write() -> None:
        other = await asyncpg.connect(live_chains)
        try:
            await other.execute(
                RECORD_ACCESS_EVENTS,
                json.dumps(
                    [
                        {
                            "request_id": "during-verify",
                            "kind": "disclosure",
                            "issuer": "urn:test",
                            "subject": "s",
                            "role": "support",
                            "objects": [],
                        }
                    ]
                ),
                [],
            )
        finally:
            await other.close()
        written.append(True)

    class Interleaved(asyncpg.Connection):
        async def fetch(self, query, *args, **kwargs):
            rows = await super().fetch(query, *args, **kwargs)
            if "audit_chains" in query and not written:
                await write()  # committed between reading the heads and reading the events
            return rows

    async def run():
        connection = await asyncpg.connect(live_chains, connection_class=Interleaved)
        try:
            during = await verify_chain(connection)
            after = await verify_chain(connection)
        finally:
            await connection.close()
        return during, after

    during, after = asyncio.run(run())
    assert written == [True]
    assert during == type(during)(True, 6, "audit chain intact: 6 events")
    assert after == type(after)(True, 7, "audit chain intact: 7 events")


def test_events_stored_one_entry_per_object_read_as_the_grouped_ones(env, client):
    """The trail written before objects were grouped (one ``{"type", "id", "fields"}`` per
    object), grouped as JSON (``{"type", "fields", "ids"}`` per type and set of fields), and
    compact (migration 0016: the ids as a uuid[], the groups beside them) read the same: in the
    patient's access log over HTTP, in the FHIR export, and ``gateway audit verify`` holds over
    all three."""
    subject, patient = env.patients()[11]
    consultations = sorted(env.truth.consultations_of_patient[patient])[:2]
    old = [
        {"type": "Consultation", "id": str(pk), "fields": ["id", "reason"]} for pk in consultations
    ]
    grouped = [
        {
            "type": "Consultation",
            "fields": ["id", "reason"],
            "ids": sorted(str(pk) for pk in consultations),
        }
    ]
    events = [
        {
            "request_id": f"formats-{form}",
            "kind": "disclosure",
            "issuer": "https://formats.test",
            "subject": f"formats-{form}",
            "role": "support",
            "actor_id": None,
            "patient_id": str(patient),
            "client_id": None,
            "break_glass_reason": None,
            "objects": objects,
            "detail": {},
        }
        for form, objects in (("old", old), ("grouped", grouped), ("compact", []))
    ]
    # The compact form (migration 0016): the ids as a uuid[], the group as [type, fields, count].
    events[2] |= {
        "object_groups": [["Consultation", ["id", "reason"], len(consultations)]],
        "ids_from": 0,
        "ids_count": len(consultations),
    }
    ids = sorted(consultations, key=str)
    _admin(env, lambda c: c.execute(RECORD_ACCESS_EVENTS, json.dumps(events), ids))
    log = client.execute(LOG, env.token(subject))["data"]["accessLog"]["edges"]
    shown = {
        e["node"]["accessorSubject"]: e["node"]["objects"]
        for e in log
        if e["node"]["accessorSubject"].startswith("formats-")
    }
    expected = sorted(
        (
            {
                "type": "Consultation",
                "id": encode_global_id("Consultation", pk),
                "fields": ["id", "reason"],
            }
            for pk in consultations
        ),
        key=lambda item: item["id"],
    )
    assert sorted(shown["formats-old"], key=lambda item: item["id"]) == expected
    assert shown["formats-grouped"] == shown["formats-old"]
    assert shown["formats-compact"] == shown["formats-old"]
    rows = _admin(
        env,
        lambda c: c.fetch(
            "select *, data.event_objects(access_events) as resolved_objects "
            "from data.access_events where request_id like 'formats-%' order by seq"
        ),
    )
    exported = [to_audit_event(row)["entity"] for row in rows]
    assert exported[0] == exported[1] == exported[2]
    assert len(exported[0]) == 1 + len(consultations)  # the patient, then each consultation
    verified = run_gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize(
    ("groups", "ids", "refusal"),
    [
        ([["Consultation", ["id"], 3]], 2, "counts do not add up to its ids"),
        ([["Consultation", ["id"], -1], ["Patient", ["id"], 3]], 2, "groups are malformed"),
        (None, 2, "ids without their groups"),
    ],
)
def test_an_event_whose_groups_do_not_account_for_its_ids_is_refused(env, groups, ids, refusal):
    """Attack (a writer gone wrong): an event whose groups count more or fewer objects than the
    ids it stores, a negative count, or ids with no groups at all (the access log would show
    them under the wrong fields, or not at all). Expected: the write is refused, nothing stored."""
    event = {
        "request_id": f"malformed-{uuid.uuid4().hex[:8]}",
        "kind": "disclosure",
        "issuer": "urn:test",
        "subject": "s",
        "role": "support",
        "objects": [],
        "object_groups": groups,
        "ids_from": 0,
        "ids_count": ids,
    }
    uuids = [uuid.uuid4() for _ in range(ids)]

    async def write(connection):
        with pytest.raises(asyncpg.RaiseError, match=refusal):
            if groups is None:  # past the function: the table's own check
                await connection.execute(
                    "insert into data.access_events (request_id, kind, issuer, subject, role, "
                    "object_ids) values ($1, 'disclosure', 'urn:test', 's', 'support', $2)",
                    event["request_id"],
                    uuids,
                )
            else:
                await connection.execute(RECORD_ACCESS_EVENTS, json.dumps([event]), uuids)
        return await connection.fetchval(
            "select count(*) from data.access_events where request_id = $1", event["request_id"]
        )

    assert _admin(env, write) == 0
