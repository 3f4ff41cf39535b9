"""What one Q2 disclosure costs the audit trail: bytes stored and database CPU per write, for the
record as it was (one JSON entry per object) and as the gateway writes it now (migration 0016:
ids as uuid[], groups beside them).

    .venv/bin/python -m bench.audit --writes 500

Starts (or reuses) the bench's durable PostgreSQL and database, builds the audit event of a
patient's replays page (50 consultations, the patient, 79 recordings: 130 objects in three
field sets) from a ledger as the disclosure step does, and writes it ``--writes`` times in each
form, each write its own transaction (as a request's is), through the statement the gateway
sends. The database's CPU is the backend's own (utime + stime from /proc), so the round trip and
this process do not count; bytes are ``pg_column_size`` of the stored rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import uuid
from pathlib import Path

import asyncpg
import orjson

from bench.run import WORK, prepare_database

TICKS = os.sysconf("SC_CLK_TCK")
BEFORE_0016 = "select api.record_access_events($1::jsonb)"


def _q2_event(patient: uuid.UUID) -> list[dict]:
    """The disclosure event of one Q2 response, from a ledger filled as a plan fills it."""
    from gateway.audit.events import events_from_ledger
    from gateway.identity import Principal, Role
    from gateway.ledger import Ledger

    ledger = Ledger()
    consultation_fields = (
        "id", "scheduledAt", "status", "mode", "reason", "summary", "clinician", "patient",
        "recordings",
    )  # fmt: skip
    recording_fields = ("id", "segmentIndex", "mode", "durationSeconds", "playbackUrl")
    for index in range(50):
        consultation = uuid.uuid4()
        ledger.record_object("Consultation", consultation, patient)
        ledger.record_reads("Consultation", consultation, patient, consultation_fields)
        for _ in range(2 if index < 29 else 1):
            recording = uuid.uuid4()
            ledger.record_object("Recording", recording, patient)
            ledger.record_reads("Recording", recording, patient, recording_fields)
        ledger.record_object("Patient", patient, patient)
        ledger.record_reads("Patient", patient, patient, ("displayName",))
    principal = Principal("https://bench.invalid", "patient-bench", Role.PATIENT, patient, 0.0)
    return events_from_ledger(principal, "bench-audit", ledger)


def _per_object(events: list[dict]) -> str:
    """The same events as stored before grouping: one JSON entry per object."""
    from gateway.audit.events import expand_objects

    return orjson.dumps(
        [{**event, "objects": expand_objects(event["objects"])} for event in events],
        default=str,
    ).decode()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _measure(admin_url: str, app_url: str, writes: int) -> None:
    from gateway.audit.writer import _compact
    from gateway.data.queries import RECORD_ACCESS_EVENTS

    patient = await (await asyncpg.connect(admin_url)).fetchval(
        "select id from data.patients order by id limit 1"
    )
    connection = await asyncpg.connect(app_url)  # as the gateway writes: its role
    reader = await asyncpg.connect(admin_url)
    try:
        events = _q2_event(patient)
        compact, ids = _compact(events)
        forms = {
            "per object (JSON, before)": (BEFORE_0016, (_per_object(events),)),
            "compact (0016-0018)": (
                RECORD_ACCESS_EVENTS,
                (orjson.dumps(compact, default=str).decode(), ids),
            ),
        }
        pid = await connection.fetchval("select pg_backend_pid()")
        print(f"one Q2 disclosure: {sum(len(e['objects']) for e in events)} groups, "
              f"{len(ids)} uuids; {writes} writes per form, each its own transaction")  # fmt: skip
        for name, (statement, arguments) in forms.items():
            for _ in range(20):  # warm-up: plans, caches
                await connection.execute(statement, *arguments)
            first = await reader.fetchval("select max(seq) from data.access_events")
            samples = []
            for _ in range(5):
                before = _cpu(pid)
                for _ in range(writes // 5):
                    await connection.execute(statement, *arguments)
                samples.append((_cpu(pid) - before) / (writes // 5) * 1000)
            size = await reader.fetchrow(
                "select avg(pg_column_size(e.*))::int as row_bytes, "
                "avg(octet_length(e.objects::text) "
                "+ coalesce(octet_length(e.object_groups::text), 0) "
                "+ 4 * coalesce(cardinality(e.object_sets) + cardinality(e.object_counts), 0) "
                "+ 16 * coalesce(cardinality(e.object_ids), 0))::int "
                "as object_bytes from data.access_events e where seq > $1",
                first,
            )
            print(
                f"  {name:28} database CPU {statistics.median(samples):.3f} ms per write "
                f"(median of 5 chunks, {min(samples):.3f}-{max(samples):.3f}); "
                f"stored row {size['row_bytes']} bytes (objects {size['object_bytes']} bytes "
                "before compression)"
            )
    finally:
        await connection.close()
        await reader.close()


async def _run(args: argparse.Namespace) -> None:
    from gateway.dev.embedded import EmbeddedPostgres
    from gateway.dev.identity import DevIdentity

    WORK.mkdir(parents=True, exist_ok=True)
    identity = DevIdentity.load_or_create(WORK / "identity")
    cluster = EmbeddedPostgres(WORK / "profile", fast=False)
    server_url = cluster.start()
    try:
        admin_url, app_url = await prepare_database(server_url, 200, 40, 50, identity.issuer)
        await _measure(admin_url, app_url, args.writes)
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=500)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
