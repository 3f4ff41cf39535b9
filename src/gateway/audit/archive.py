"""Archiving months of the audit trail, deleting archives past retention, restoring one, and
verifying the whole trail with its archives.

``archive_before`` takes each month (partition) that ended on or before a date, and at least
``GRACE`` ago by the database's clock, oldest first. Each month is first closed in a short
transaction of its own (``_close``: a constraint no row meets, so a late writer is refused, not
lost); then, in one transaction under SHARE on the partition, its file is written
(``gateway.audit.archive_file``), put in the store, fetched back and checked (its digest, every
event's hash and link, its count and runs against the partition's, and every checkpoint recorded
in it: an event rewritten after it was verified is not archived), recorded in
``data.audit_archives`` and an ``audit-archived`` event written. A month whose check fails is
left in place, and so are the months after it (those archived are always the oldest).

Then, apart (``drop_archived``), each archived month is detached (CONCURRENTLY: the trail's
writers go on) and dropped; a month whose drop cannot get its locks is left for the next run.
Meanwhile the readers take an archived month from its archive, not from its partition
(``gateway.audit.chain.LIVE``). The verify walk goes on across the edge through the archive's
runs (``gateway.audit.chain``).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import asyncpg
import orjson

from gateway.audit.anchor import Anchor
from gateway.audit.archive_file import (
    COLUMNS,
    ArchiveError,
    ArchiveReader,
    ArchiveWriter,
    Runs,
    event_order,
)
from gateway.audit.archive_store import ArchiveStore
from gateway.audit.chain import (
    LIVE,
    ChainReport,
    Held,
    Tails,
    _field_sets,
    _groups_text,
    event_link,
    lock_trail,
    walk_from,
)
from gateway.audit.checkpoints import furthest, held_checkpoints
from gateway.audit.fhir import to_audit_event
from gateway.errors import ConfigurationError

__all__ = [
    "MONTH_ROWS",
    "ArchiveStopped",
    "Archived",
    "archive_before",
    "delete_expired",
    "drop_archived",
    "events_of_archive",
    "export_archived",
    "export_live",
    "restore",
    "verify",
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
# A month's rows as an archive file holds them (gateway.audit.archive_file), in its order.
MONTH_ROWS = """
select id, occurred_at, request_id, kind, issuer, subject, role, actor_id, patient_id,
       detail::text as detail, client_id, break_glass_reason, objects::text as objects, seq,
       prev_hash, hash, chain_id, chain_seq, object_groups::text as object_groups,
       object_ids::text[] as object_ids, object_sets, object_counts
from audit_partitions.{name}
order by case when chain_id is not null then chain_id when seq is not null then 0 else -1 end,
         coalesce(chain_seq, seq, id)
"""
# The archive catalog as verify reads it (deleted archives too: the walk takes their runs).
_CATALOG = """
select partition_name, period_start, period_end, location, sha256, events, runs::text as runs,
       deleted_at is not null as deleted
from data.audit_archives order by period_start
"""
# The months archived whose tables are still there: ``closed`` when the archive closed them (its
# constraint): only those are dropped.
_ARCHIVED_PARTITIONS = """
select c.relname, coalesce(i.inhdetachpending, false) as pending, a.location,
       exists (select from pg_constraint k
               where k.conrelid = c.oid and k.conname = c.relname || '_archived') as closed
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join data.audit_archives a on a.partition_name = c.relname
left join pg_inherits i on i.inhrelid = c.oid
where n.nspname = 'audit_partitions' and c.relkind = 'r'
order by c.relname
"""
GRACE = timedelta(hours=1)
"""How long after its end (by the database's clock) a month may be archived: a transaction that
began before midnight may still be writing its events."""
_LOCK_ATTEMPTS = 30


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
    connection: asyncpg.Connection,
    store: ArchiveStore,
    before: datetime,
    operator: str,
    *,
    grace: timedelta = GRACE,
    drop_wait: str = "60s",
) -> tuple[list[Archived], list[str], list[str]]:
    """Archive every month that ended on or before ``before`` and at least ``GRACE`` ago (by the
    database's clock), oldest first, then drop the months archived (``drop_archived``): (the
    months archived, those dropped, those whose drop waits for the next run)."""
    now = await connection.fetchval("select clock_timestamp()")
    this_month = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if before > this_month:
        raise ConfigurationError(
            f"--before {before:%Y-%m-%d} is after the start of this month "
            f"({this_month:%Y-%m-%d}, by the database's clock): a month is archived once it "
            "has ended"
        )
    rows = await connection.fetch(_ARCHIVED_PARTITIONS)
    unclosed = [f"{r['relname']} (archived at {r['location']})" for r in rows if not r["closed"]]
    if unclosed:  # a month archived, then made again by hand: its events are in no archive
        raise ArchiveError(
            "audit_partitions holds months already archived that their archive did not close: "
            f"{', '.join(unclosed)}; their events are in no archive: nothing was archived or "
            "dropped"
        )
    archived = {row["relname"] for row in rows}
    names = [
        row[0]
        for row in await connection.fetch(_PARTITIONS)
        if row[0] not in archived and _period(row[0])[1] <= before
    ]
    for name in names:  # all checked before any is archived
        end = _period(name)[1]
        if now - end < grace:
            raise ConfigurationError(
                f"{name} ended at {end:%Y-%m-%d %H:%M} UTC, less than {grace} ago by the "
                "database's clock (a transaction begun before then may still be writing to "
                f"it): archive it after {end + grace:%Y-%m-%d %H:%M} UTC"
            )
    done: list[Archived] = []
    failure = None
    for name in names:
        try:
            done.append(await _archive_one(connection, store, name, operator))
        except ArchiveError as exc:
            failure = f"{exc} ({name} and the months after it stay in the database)"
            break
    dropped, left = await drop_archived(connection, drop_wait)
    if failure is not None:
        raise ArchiveStopped(failure, done, dropped, left)
    return done, dropped, left


class ArchiveStopped(ArchiveError):
    """A month could not be archived: what was archived and dropped before it."""

    def __init__(
        self, message: str, archived: list[Archived], dropped: list[str], left: list[str]
    ) -> None:
        super().__init__(message)
        self.archived, self.dropped, self.left = archived, dropped, left


async def _archive_one(
    connection: asyncpg.Connection, store: ArchiveStore, name: str, operator: str
) -> Archived:
    start, end = _period(name)
    file_name = f"{name}.jsonl.gz"
    await _close(connection, name)
    with tempfile.TemporaryDirectory(prefix="gateway-audit-archive-") as work:
        written, fetched = Path(work) / file_name, Path(work) / "fetched"
        async with connection.transaction():
            # One archive of a month at a time (SHARE does not exclude itself), and no event
            # added to it meanwhile.
            await connection.execute("select pg_advisory_xact_lock(hashtext($1))", name)
            await connection.execute(f"lock table audit_partitions.{name} in share mode")
            if await connection.fetchval(
                "select exists (select from data.audit_archives where partition_name = $1)", name
            ):
                raise ArchiveError(f"{name} was archived meanwhile (another run)")
            header = await write_month(connection, name, written)
            digest = _sha256(written)
            store.put(file_name, written)
            store.fetch(file_name, fetched)
            if _sha256(fetched) != digest:
                raise ArchiveError(f"{store.location(file_name)} reads back other bytes")
            held = await held_checkpoints(connection)
            report = _check_file(fetched, header["runs"], header["events"], held)
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
        return Archived(name, location, header["events"], written.stat().st_size, digest)


async def _close(connection: asyncpg.Connection, name: str) -> None:
    """Close the month, first and in a transaction of its own: a constraint no row meets, so
    that an event a late transaction adds to it is refused (its request fails), never kept only
    in a table about to be dropped. ACCESS EXCLUSIVE on this month alone (the trail's writers, on
    this month's table, are not held), waiting a second at a time so that no query queues behind
    it for longer, retried; a month already closed (an archive that failed after) stays so."""
    closed = (
        "select exists (select from pg_constraint where conrelid = $1::regclass and conname = $2)"
    )
    for _ in range(_LOCK_ATTEMPTS):
        if await connection.fetchval(closed, f"audit_partitions.{name}", f"{name}_archived"):
            return
        try:
            async with connection.transaction():
                await connection.execute("set local lock_timeout = '1s'")
                await connection.execute(
                    f"alter table audit_partitions.{name} add constraint {name}_archived "
                    "check (false) not valid"
                )
            return
        except asyncpg.LockNotAvailableError:
            continue
        except asyncpg.DuplicateObjectError:  # another run closed it meanwhile
            return
    raise ArchiveError(
        f"{name} could not be closed: a transaction reading it held it for "
        f"{_LOCK_ATTEMPTS} attempts of a second (pg_stat_activity names it)"
    )


async def drop_archived(
    connection: asyncpg.Connection, wait: str = "60s"
) -> tuple[list[str], list[str]]:
    """Detach (CONCURRENTLY: the trail's writers go on) and drop every month archived whose
    partition is still there: (those dropped, those left for the next run because their locks
    did not come within ``wait``, a PostgreSQL interval)."""
    dropped: list[str] = []
    # Closed by their archive only; the one a detach left pending first (the trail may have only
    # one pending at a time, so no other starts until it is finished).
    rows = sorted(
        (row for row in await connection.fetch(_ARCHIVED_PARTITIONS) if row["closed"]),
        key=lambda row: (not row["pending"], row["relname"]),
    )
    for index, row in enumerate(rows):
        name = row["relname"]
        attached = await connection.fetchval(
            "select exists (select from pg_inherits where inhrelid = $1::regclass)",
            f"audit_partitions.{name}",
        )
        try:
            await connection.execute("select set_config('lock_timeout', $1, false)", wait)
            if attached:
                mode = "finalize" if row["pending"] else "concurrently"
                await connection.execute(
                    f"alter table data.access_events detach partition "
                    f"audit_partitions.{name} {mode}"
                )
            await connection.execute(f"drop table audit_partitions.{name}")
            dropped.append(name)
        except (asyncpg.LockNotAvailableError, asyncpg.ObjectNotInPrerequisiteStateError):
            # waiting (or another run's detach pending): this one and the rest, next run
            return dropped, [r["relname"] for r in rows[index:]]
        finally:
            await connection.execute("reset lock_timeout")
    return dropped, []


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
    try:
        async for row in connection.cursor(MONTH_ROWS.format(name=name), prefetch=2000):
            writer.write(row)
    except BaseException:
        writer.discard()
        raise
    return writer.close()


def _check_file(
    path: Path,
    runs: list[dict[str, Any]],
    events: int,
    held: Held | None = None,
    period: tuple[str, str] | None = None,
) -> str | None:
    """Every event's hash and its link to the one before it in the file, its runs (as its
    events make them), count and month (``period``, when given) as expected, and every
    checkpoint (``held``) it holds; what is wrong, or None."""
    held = held or {}
    try:
        reader = ArchiveReader(path)
        header = reader.header
        if header["runs"] != runs or header["events"] != events:
            return "its header differs from the catalog"
        if period is not None and (header.get("period_start"), header.get("period_end")) != period:
            return "its month differs from the catalog's"
        field_sets = {int(k): (v[0], list(v[1])) for k, v in reader.header["field_sets"].items()}
        found = Runs()
        inside: dict[int, tuple[int, bytes]] = {}
        for event in reader.events():
            found.add(event)
            if event_order(event)[0] < 0:
                continue
            link = event_link(event, field_sets)
            where = link.where.strip()
            last = inside.get(link.chain)
            if link.altered:
                return f"{where}: contents were altered"
            if last is not None and last[0] + 1 == link.first and last[1] != link.prev_hash:
                return f"{where}: does not follow the event before it"
            checkpoint = held.get((link.chain, link.first))
            if checkpoint is not None and checkpoint[0] != link.hash:
                return (
                    f"{where}: differs from the checkpoint {checkpoint[1]} (the trail "
                    "was rewritten after it was verified)"
                )
            inside[link.chain] = (link.last, link.hash)
        if found.runs != runs:
            return "its events do not make the runs it records"
    except ArchiveError as exc:
        return str(exc)
    return None


async def verify_full(
    connection: asyncpg.Connection, store: ArchiveStore | None
) -> tuple[ChainReport, Tails]:
    """``verify(full=True)`` without an anchor: every archived month's file and every chain
    from its start."""
    report, tails, _ = await verify(connection, full=True, archives=lambda: store)
    return report, tails


async def verify(
    connection: asyncpg.Connection,
    *,
    full: bool,
    anchor: Anchor | None = None,
    archives: Callable[[], ArchiveStore | None] | None = None,
) -> tuple[ChainReport, Tails, list[Any]]:
    """The trail verified in one snapshot (the trail locked first: no month dropped under it):
    (the report, where each chain's walk ended, the archive catalog it saw).

    Each chain starts at its furthest checkpoint, or (``full``) at its start; with an
    ``anchor``, at the anchor's heads (a chain it lacks at its start), which are also held as
    checkpoints and as the least each chain must reach, and the catalog is held to the archives
    the anchor saw. The archived months' files are checked one at a time (the digest against
    the catalog, then ``_check_file`` against its runs and every checkpoint): with ``full`` every
    one not deleted, else those archived since the anchor (the walk trusts their runs), from
    ``archives()``."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        await lock_trail(connection)
        held = await held_checkpoints(connection)
        catalog = await connection.fetch(_CATALOG)
        since = None if full else furthest(held)
        check = [row for row in catalog if not row["deleted"]] if full else []
        if anchor is not None:
            problem, new = anchor.catalog(catalog)
            if not full:  # not the database's checkpoints: a chain the anchor lacks from its start
                since, check = dict(anchor.heads), new
            problem = problem or _across_anchored(catalog, check, anchor)
            if problem is not None:
                return ChainReport(False, 0, f"broken at {problem}"), {}, catalog
            held = {**held, **anchor.held()}
        if check:
            store = archives() if archives is not None else None
            if store is None:
                raise ConfigurationError("verifying archived months needs their store")
            with tempfile.TemporaryDirectory(prefix="gateway-audit-verify-") as work:
                for row in check:
                    problem = _check_archived(store, row, held, Path(work))
                    if problem is not None:
                        return ChainReport(False, 0, f"broken at archive {problem}"), {}, catalog
        floors = anchor.heads if anchor is not None else None
        report, tails = await walk_from(connection, since, held, floors)
        return report, tails, catalog


def _across_anchored(catalog: list[Any], checked: list[Any], anchor: Anchor) -> str | None:
    """A run that goes on past an anchored head from at or before it: the walk would trust it
    across the head (never comparing the event there), so its file must be checked in this run
    (it holds the anchored heads). An archive the anchor saw never has one (the run that saw it
    walked past its runs' ends)."""
    names = {row["partition_name"] for row in checked}
    for row in catalog:
        if row["partition_name"] in names:
            continue
        for run in json.loads(row["runs"]):
            head = anchor.heads.get(int(run["chain"]))
            if head is not None and int(run["first"]) <= head[0] < int(run["last"]):
                return (
                    f"archive {row['partition_name']}: its run of chain {run['chain']} goes on "
                    f"past the head anchored at position {head[0]}, and its file is not read "
                    "(deleted, or seen by an anchored run that went no further)"
                )
    return None


def _check_archived(store: ArchiveStore, row: Any, held: Held, work: Path) -> str | None:
    """One archived month's file, fetched and checked; what is wrong (naming the file), or
    None."""
    file_name = f"{row['partition_name']}.jsonl.gz"
    path = work / file_name
    where = store.location(file_name)
    if _elsewhere(store, row):
        return f"{row['location']}: not in this store (it would be read from {where})"
    try:
        store.fetch(file_name, path)
        if _sha256(path) != row["sha256"]:
            return f"{where}: its bytes differ from those archived (digest)"
        period = (row["period_start"].isoformat(), row["period_end"].isoformat())
        problem = _check_file(path, json.loads(row["runs"]), row["events"], held, period)
        return None if problem is None else f"{where}: {problem}"
    except ArchiveError as exc:  # from the store: it names the file
        return str(exc)
    finally:
        path.unlink(missing_ok=True)


async def delete_expired(
    connection: asyncpg.Connection,
    store: ArchiveStore,
    retention_months: int,
    operator: str,
    now: datetime | None = None,
) -> tuple[list[str], list[str]]:
    """Delete every archive whose month ended more than ``retention_months`` ago (by the
    database's clock): first its catalog row is marked deleted (its runs stay: the chains go on
    from them), any restored copy removed and an ``audit-archive-deleted`` event written, in one
    transaction; only once that is committed is its file deleted (a file is never gone while its
    month is listed as archived). A file an earlier run left is deleted too. Refused, before
    anything is deleted, where a file is not in this store (its catalog location differs):
    the file deleted must be the one archived. Returns the partitions deleted, and those whose
    file an earlier run left and this one deleted."""
    now = now or await connection.fetchval("select clock_timestamp()")
    total = now.year * 12 + now.month - 1 - retention_months
    cutoff = datetime(total // 12, total % 12 + 1, 1, tzinfo=UTC)
    rows = await connection.fetch(
        "select partition_name, location from data.audit_archives "
        "where deleted_at is null and period_end <= $1 order by period_start",
        cutoff,
    )
    _in_this_store(store, rows)
    deleted = []
    for row in rows:
        name = row["partition_name"]
        async with connection.transaction():
            archive = await connection.fetchval(
                "update data.audit_archives set deleted_at = now() where partition_name = $1 "
                "and deleted_at is null returning id",
                name,
            )
            if archive is None:  # another run deleted it meanwhile
                continue
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
        deleted.append(name)
    swept = []
    for row in await connection.fetch(
        "select partition_name, location from data.audit_archives where deleted_at is not null"
    ):
        file_name = f"{row['partition_name']}.jsonl.gz"
        if not _elsewhere(store, row):
            try:
                if store.delete(file_name) and row["partition_name"] not in deleted:
                    swept.append(row["partition_name"])
            except ArchiveError as exc:
                raise ArchiveError(
                    f"{exc} ({row['partition_name']} is marked deleted; the next run deletes "
                    "its file)"
                ) from None
    return deleted, swept


def _elsewhere(store: ArchiveStore, row: Any) -> str | None:
    """Where ``store`` would put a catalog row's file, when that is not where it was archived
    (another folder or bucket than the run's): the file there is not the one archived."""
    here = store.location(f"{row['partition_name']}.jsonl.gz")
    return here if here != row["location"] else None


def _in_this_store(store: ArchiveStore, rows: list[Any]) -> None:
    elsewhere = [
        f"{row['partition_name']} (at {row['location']})" for row in rows if _elsewhere(store, row)
    ]
    if elsewhere:
        raise ConfigurationError(
            f"past the retention but not in this store: {', '.join(elsewhere)}; nothing was "
            "deleted: run with the store they were archived to (--archive-root, or the "
            "settings of that time)"
        )


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
    if here := _elsewhere(store, row):
        raise ArchiveError(
            f"{name} is archived at {row['location']}, not in this store (it would be read "
            f"from {here}): run with the store it was archived to"
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
            # Not deleted under retention meanwhile (its mark waits for this to commit).
            if await connection.fetchval(
                "select deleted_at from data.audit_archives where id = $1 for share", row["id"]
            ):
                raise ConfigurationError(f"{name} was deleted under retention meanwhile")
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


# data.restored_access_events: the archive's columns but those only the hash walk needs.
_RESTORED = (
    "archive_id",
    *(name for name in COLUMNS if name not in ("prev_hash", "object_sets", "object_counts")),
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
    AuditEvents, by seq, after checking the file against its digest; return how many.

    The file holds each chain in order of position, which is the order of seq within a chain
    (a chain's next event is written after its last commits): each chain's events go to a file
    of their own, and those are merged by seq, so a month of any size needs no more memory than
    a line per chain."""
    with tempfile.TemporaryDirectory(prefix="gateway-audit-export-") as work:
        path = Path(work) / f"{name}.jsonl.gz"
        await fetch_checked(connection, store, name, path)
        chains: dict[int, BinaryIO] = {}
        last: dict[int, int] = {}
        try:
            for event in events_of_archive(path):
                seq = event["seq"]
                if seq is None or event["occurred_at"] < since:
                    continue
                if patient is not None and event["patient_id"] != patient:
                    continue
                chain = event_order(event)[0]
                if seq <= last.get(chain, -1):
                    raise ArchiveError(f"{name}: chain {chain} is not in the order of seq")
                last[chain] = seq
                if chain not in chains:
                    chains[chain] = open(Path(work) / f"chain-{chain}", "w+b")  # noqa: SIM115, ASYNC230
                chains[chain].write(b"%d " % seq + orjson.dumps(to_audit_event(event)) + b"\n")
            for spill in chains.values():
                spill.seek(0)
            count = 0
            for line in heapq.merge(*chains.values(), key=lambda line: int(line.split(b" ", 1)[0])):
                output.write(line.split(b" ", 1)[1].decode())
                count += 1
        finally:
            for spill in chains.values():
                spill.close()
    return count


async def export_live(
    connection: asyncpg.Connection, since: datetime, patient: uuid.UUID | None, output: TextIO
) -> int:
    """Write the trail's events from ``since`` (of ``patient`` if given) as FHIR AuditEvents, by
    seq; return how many."""
    query = (
        "select e.*, data.event_objects(e) as resolved_objects from data.access_events e "
        "where occurred_at >= $1 and seq is not null and ($2::uuid is null or patient_id = $2) "
        f"and {LIVE} order by seq"
    )
    count = 0
    async for row in connection.cursor(query, since, patient, prefetch=1000):
        output.write(orjson.dumps(to_audit_event(row)).decode() + "\n")
        count += 1
    return count
