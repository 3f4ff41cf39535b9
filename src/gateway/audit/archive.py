"""Archiving months of the audit trail, deleting archives past retention, restoring one, and
verifying the whole trail with its archives.

``archive_before`` takes each month (partition) that ended on or before a date, oldest first, in
one transaction per month that first takes SHARE on the partition (no event can be added to it
meanwhile): writes its file (``gateway.audit.archive_file``), puts it in the store, fetches it
back and checks it (its digest, every event's hash and link, its count and runs against the
partition's), then records it in ``data.audit_archives``, writes an ``audit-archived`` event,
and detaches and drops the partition. A month whose check fails is left in place. The verify
walk goes on across the edge through the archive's runs (``gateway.audit.chain``).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import orjson

from gateway.audit.archive_file import ArchiveError, ArchiveReader, ArchiveWriter, event_order
from gateway.audit.archive_store import ArchiveStore
from gateway.audit.chain import (
    ChainReport,
    ChainWalk,
    Link,
    Tails,
    _field_sets,
    _groups_text,
    archived_runs,
    event_link,
    genesis_tails,
    heads,
    live_links,
    merged,
)
from gateway.audit.fhir import to_audit_event
from gateway.errors import ConfigurationError

__all__ = [
    "Archived",
    "archive_before",
    "delete_expired",
    "events_of_archive",
    "export_archived",
    "export_live",
    "restore",
    "verify_full",
    "write_month",
]

_MONTH = re.compile(r"^access_events_(\d{4})_(\d{2})$")
_PARTITIONS = """
select c.relname from pg_inherits i
join pg_class c on c.oid = i.inhrelid
join pg_namespace n on n.oid = c.relnamespace
where i.inhparent = 'data.access_events'::regclass and n.nspname = 'audit_partitions'
order by c.relname
"""
_ROWS = """
select id, occurred_at, request_id, kind, issuer, subject, role, actor_id, patient_id,
       detail::text as detail, client_id, break_glass_reason, objects::text as objects, seq,
       prev_hash, hash, chain_id, chain_seq, object_groups::text as object_groups, object_ids,
       object_sets, object_counts
from audit_partitions.{name}
order by case when chain_id is not null then chain_id when seq is not null then 0 else -1 end,
         coalesce(chain_seq, seq, id)
"""
_RUNS_IN = """
select r.run from data.audit_archives a, jsonb_array_elements(a.runs) r(run)
where a.partition_name = $1
"""


@dataclass(frozen=True, slots=True)
class Archived:
    partition: str
    location: str
    events: int
    bytes: int
    sha256: str


def _period(name: str) -> tuple[datetime, datetime]:
    match = _MONTH.match(name)
    if match is None:
        raise ConfigurationError(f"audit_partitions.{name} is not a month of the trail")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def _record(
    connection: asyncpg.Connection, kind: str, operator: str, detail: dict[str, Any]
) -> None:
    await connection.execute(
        "insert into data.access_events (request_id, kind, issuer, subject, role, detail) "
        "values ($1, $2, 'urn:gateway:cli', $3, 'operator', $4::jsonb)",
        f"admin-{uuid.uuid4()}",
        kind,
        operator,
        json.dumps(detail, sort_keys=True),
    )


async def archive_before(
    connection: asyncpg.Connection, store: ArchiveStore, before: datetime, operator: str
) -> list[Archived]:
    """Archive every month that ended on or before ``before`` (at most the start of the current
    month: a month still being written is refused), oldest first."""
    this_month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if before > this_month:
        raise ConfigurationError(
            f"--before {before:%Y-%m-%d} is after the start of this month "
            f"({this_month:%Y-%m-%d}): a month is archived once it has ended"
        )
    names = [row[0] for row in await connection.fetch(_PARTITIONS)]
    done = []
    for name in names:
        if _period(name)[1] <= before:
            done.append(await _archive_one(connection, store, name, operator))
    return done


async def _archive_one(
    connection: asyncpg.Connection, store: ArchiveStore, name: str, operator: str
) -> Archived:
    start, end = _period(name)
    file_name = f"{name}.jsonl.gz"
    with tempfile.TemporaryDirectory(prefix="gateway-audit-archive-") as work:
        written, fetched = Path(work) / file_name, Path(work) / "fetched"
        async with connection.transaction():
            # One archive of a month at a time (SHARE does not exclude itself), and no event
            # added to it meanwhile.
            await connection.execute("select pg_advisory_xact_lock(hashtext($1))", name)
            await connection.execute(f"lock table audit_partitions.{name} in share mode")
            header = await write_month(connection, name, written)
            digest = _sha256(written)
            store.put(file_name, written)
            store.fetch(file_name, fetched)
            if _sha256(fetched) != digest:
                raise ArchiveError(f"{store.location(file_name)} reads back other bytes")
            report = _check_file(fetched, header["runs"], header["events"])
            if report is not None:
                raise ArchiveError(f"{store.location(file_name)} read back: {report}")
            location = store.location(file_name)
            await connection.execute(
                "insert into data.audit_archives (partition_name, period_start, period_end, "
                "location, sha256, bytes, events, runs) values ($1, $2, $3, $4, $5, $6, $7, $8)",
                name,
                start,
                end,
                location,
                digest,
                written.stat().st_size,
                header["events"],
                json.dumps(header["runs"]),
            )
            await _record(
                connection,
                "audit-archived",
                operator,
                {
                    "partition": name,
                    "period_start": start.isoformat(),
                    "period_end": end.isoformat(),
                    "location": location,
                    "sha256": digest,
                    "events": header["events"],
                },
            )
            await connection.execute("set local lock_timeout = '5s'")
            await connection.execute(
                f"alter table data.access_events detach partition audit_partitions.{name}"
            )
            await connection.execute(f"drop table audit_partitions.{name}")
        return Archived(name, location, header["events"], written.stat().st_size, digest)


async def write_month(connection: asyncpg.Connection, name: str, path: Path) -> dict[str, Any]:
    """Write the month ``audit_partitions.<name>`` to ``path`` as an archive file (inside the
    caller's transaction); return its header."""
    start, end = _period(name)
    field_sets = await _field_sets(connection)
    writer = ArchiveWriter(
        path,
        {
            "partition": name,
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "field_sets": {str(k): list(v) for k, v in sorted(field_sets.items())},
            "written_at": datetime.now(UTC).isoformat(),
        },
    )
    async for row in connection.cursor(_ROWS.format(name=name), prefetch=2000):
        writer.write(row)
    return writer.close()


def _file_links(reader: ArchiveReader, where: str) -> Iterator[Link]:
    field_sets = {int(k): (v[0], list(v[1])) for k, v in reader.header["field_sets"].items()}
    for event in reader.events():
        if event_order(event)[0] >= 0:
            yield event_link(event, field_sets, where)


def _check_file(path: Path, runs: list[dict[str, Any]], events: int) -> str | None:
    """Every event's hash and link inside the file, its runs and count as expected."""
    try:
        reader = ArchiveReader(path)
        if reader.header["runs"] != runs or reader.header["events"] != events:
            return "its header differs from the partition"
        inside: dict[int, tuple[int, bytes]] = {}
        for link in _file_links(reader, ""):
            last = inside.get(link.chain)
            if link.altered:
                return f"{link.where.strip()}: contents were altered"
            if last is not None and last[0] + 1 == link.first and last[1] != link.prev_hash:
                return f"{link.where.strip()}: does not follow the event before it"
            inside[link.chain] = (link.last, link.hash)
    except ArchiveError as exc:
        return str(exc)
    return None


async def _archive_links(
    connection: asyncpg.Connection, store: ArchiveStore, name: str, sha256: str, work: Path
) -> AsyncIterator[Link]:
    """The events of one archived month, from its file, after checking its digest and header
    against the catalog; a file that fails is one broken link, naming the file."""
    file_name = f"{name}.jsonl.gz"
    path = work / file_name
    where = f" in {store.location(file_name)}"
    catalog = [json.loads(row[0]) for row in await connection.fetch(_RUNS_IN, name)]
    try:
        store.fetch(file_name, path)
        if _sha256(path) != sha256:
            raise ArchiveError("its bytes differ from those archived (digest)")
        reader = ArchiveReader(path)
        if reader.header["runs"] != catalog:
            raise ArchiveError("its runs differ from the catalog's")
        for link in _file_links(reader, where):
            yield link
    except (ArchiveError, FileNotFoundError) as exc:
        yield Link(-1, 0, 0, b"", b"", f"archive {store.location(file_name)}: {exc}")
    finally:
        path.unlink(missing_ok=True)


async def verify_full(
    connection: asyncpg.Connection, store: ArchiveStore | None
) -> tuple[ChainReport, Tails]:
    """Every chain from its start: the archived months from their files (those deleted under
    retention by their catalog runs), then the trail."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        now = await heads(connection)
        archives = await connection.fetch(
            "select partition_name, sha256, deleted_at is not null as deleted "
            "from data.audit_archives order by period_start"
        )
        deleted_runs = sorted(
            (link for _, _, deleted, link in await archived_runs(connection) if deleted),
            key=lambda link: (link.chain, link.first),
        )
        field_sets = await _field_sets(connection)
        tails = genesis_tails(now)
        walk = ChainWalk(tails, now)
        with tempfile.TemporaryDirectory(prefix="gateway-audit-verify-") as work:
            sources = [_links(deleted_runs), live_links(connection, field_sets, tails)]
            for row in archives:
                if not row["deleted"]:
                    if store is None:
                        raise ConfigurationError("verifying archived months needs their store")
                    sources.append(
                        _archive_links(
                            connection, store, row["partition_name"], row["sha256"], Path(work)
                        )
                    )
            async for link in merged(sources):
                if link.chain < 0:
                    return ChainReport(False, walk.events, f"broken at {link.where}"), walk.tails
                if not walk.step(link):
                    break
        return walk.end(), walk.tails


async def _links(links: list[Link]) -> AsyncIterator[Link]:
    for link in links:
        yield link


async def delete_expired(
    connection: asyncpg.Connection,
    store: ArchiveStore,
    retention_months: int,
    operator: str,
    now: datetime | None = None,
) -> list[str]:
    """Delete every archive whose month ended more than ``retention_months`` ago: its file and
    any restored copy, its catalog row marked deleted (its runs stay: the chains go on from
    them), each with an ``audit-archive-deleted`` event. Returns the partitions' names."""
    now = now or datetime.now(UTC)
    total = now.year * 12 + now.month - 1 - retention_months
    cutoff = datetime(total // 12, total % 12 + 1, 1, tzinfo=UTC)
    rows = await connection.fetch(
        "select partition_name, location from data.audit_archives "
        "where deleted_at is null and period_end <= $1 order by period_start",
        cutoff,
    )
    deleted = []
    for row in rows:
        name = row["partition_name"]
        async with connection.transaction():
            archive = await connection.fetchval(
                "update data.audit_archives set deleted_at = now() where partition_name = $1 "
                "returning id",
                name,
            )
            # A restored copy goes with its archive: nothing outlives the retention.
            await connection.execute(
                "delete from data.restored_access_events where archive_id = $1", archive
            )
            await _record(
                connection,
                "audit-archive-deleted",
                operator,
                {
                    "partition": name,
                    "location": row["location"],
                    "retention_months": retention_months,
                },
            )
            store.delete(f"{name}.jsonl.gz")
        deleted.append(name)
    return deleted


def events_of_archive(path: Path) -> Iterator[dict[str, Any]]:
    """An archive's events with their objects resolved (``resolved_objects``), as the FHIR
    export and a restore take them; raises ``ArchiveError`` where the file is not whole."""
    reader = ArchiveReader(path)
    field_sets = {int(k): (v[0], list(v[1])) for k, v in reader.header["field_sets"].items()}
    for event in reader.events():
        yield _groups_text(event, field_sets)


async def fetch_checked(
    connection: asyncpg.Connection, store: ArchiveStore, name: str, target: Path
) -> dict[str, Any]:
    """Fetch one archive to ``target`` and check its digest against the catalog; return its
    catalog row."""
    row = await connection.fetchrow(
        "select * from data.audit_archives where partition_name = $1", name
    )
    if row is None:
        raise ConfigurationError(f"{name} is not archived")
    if row["deleted_at"] is not None:
        raise ConfigurationError(
            f"{name} was deleted on {row['deleted_at']:%Y-%m-%d} (retention): nothing to read"
        )
    store.fetch(f"{name}.jsonl.gz", target)
    if _sha256(target) != row["sha256"]:
        raise ArchiveError(f"{row['location']}: its bytes differ from those archived (digest)")
    return dict(row)


async def restore(
    connection: asyncpg.Connection, store: ArchiveStore, name: str, operator: str
) -> int:
    """Load one archived month into ``data.restored_access_events`` for the auditors' queries
    (after checking it whole); return how many events. Audited (``audit-restored``)."""
    with tempfile.TemporaryDirectory(prefix="gateway-audit-restore-") as work:
        path = Path(work) / f"{name}.jsonl.gz"
        row = await fetch_checked(connection, store, name, path)
        problem = _check_file(path, json.loads(row["runs"]), row["events"])
        if problem is not None:
            raise ArchiveError(f"{row['location']}: {problem}")
        async with connection.transaction():
            await connection.execute(
                "delete from data.restored_access_events where archive_id = $1", row["id"]
            )
            records = (
                (row["id"], *(event[c] for c in _RESTORED[1:])) for event in events_of_archive(path)
            )
            await connection.copy_records_to_table(
                "restored_access_events", schema_name="data", records=records, columns=_RESTORED
            )
            await _record(
                connection,
                "audit-restored",
                operator,
                {"partition": name, "location": row["location"], "events": row["events"]},
            )
    return int(row["events"])


_RESTORED = (
    "archive_id",
    "id",
    "occurred_at",
    "seq",
    "request_id",
    "kind",
    "issuer",
    "subject",
    "role",
    "actor_id",
    "patient_id",
    "client_id",
    "break_glass_reason",
    "objects",
    "object_groups",
    "object_ids",
    "detail",
    "chain_id",
    "chain_seq",
    "hash",
)


async def export_archived(
    connection: asyncpg.Connection,
    store: ArchiveStore,
    name: str,
    since: datetime,
    patient: uuid.UUID | None,
    output: TextIO,
) -> int:
    """Write one archived month's events (from ``since``, of ``patient`` if given) as FHIR
    AuditEvents, by seq, after checking the file against its digest; return how many."""
    with tempfile.TemporaryDirectory(prefix="gateway-audit-export-") as work:
        path = Path(work) / f"{name}.jsonl.gz"
        await fetch_checked(connection, store, name, path)
        events = [
            event
            for event in events_of_archive(path)
            if event["occurred_at"] >= since
            and event["seq"] is not None
            and (patient is None or event["patient_id"] == patient)
        ]
    events.sort(key=lambda event: event["seq"])
    for event in events:
        output.write(orjson.dumps(to_audit_event(event)).decode() + "\n")
    return len(events)


async def export_live(
    connection: asyncpg.Connection, since: datetime, patient: uuid.UUID | None, output: TextIO
) -> int:
    """Write the trail's events from ``since`` (of ``patient`` if given) as FHIR AuditEvents, by
    seq; return how many."""
    query = (
        "select e.*, data.event_objects(e) as resolved_objects from data.access_events e "
        "where occurred_at >= $1 and seq is not null and ($2::uuid is null or patient_id = $2) "
        "order by seq"
    )
    count = 0
    async for row in connection.cursor(query, since, patient, prefetch=1000):
        output.write(orjson.dumps(to_audit_event(row)).decode() + "\n")
        count += 1
    return count
