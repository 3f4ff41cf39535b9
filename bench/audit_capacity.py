"""How much the audit trail holds, costs and takes to verify: bytes per event, the write's time,
a year of monthly partitions, its archives and its verification, and projections by request rate.

    .venv/bin/python -m bench.audit_capacity          # 1,000 patients x 50 consultations,
                                                      # 2,000 requests per kind (Q4: 400),
                                                      # a year of 12 x 100,000 events
    .venv/bin/python -m bench.audit_capacity --quick  # 200 patients, 200 requests (Q4: 50),
                                                      # 12 x 5,000 events

On durable PostgreSQL (fsync, synchronous_commit and full_page_writes on: the report prints them
as the server reports them) in a cluster of its own, made anew each run
(bench/.work/audit_capacity), seeded as
bench.run seeds, with the gateway in production mode in this process (the bench's settings, the
requests over its ASGI interface, as bench.profile sends them):

1. **Bytes per event** of each kind of request (Q1-Q4 of bench/operations.graphql, and a
   playback: ``GET`` of a recording's signed URL with the bearer token, one ``media`` event
   each): ``--requests`` real requests of each kind (``--q4-requests`` of Q4), sent one at a
   time for 200 different patients, each written by the gateway's own disclosure step. The
   trail's size is ``pg_total_relation_size`` summed over every partition (heap, TOAST, every
   index, free-space and visibility maps), after a VACUUM before and after each kind; the delta
   divided by the events written. Its resolution is one 8 kB page per relation, divided by the
   events.
2. **Insert cost**: the wall time of each call of the gateway's audit writer
   (``AccessEventWriter.write``: the events made compact, one statement that checks the grant and
   stores them, its commit flushed to disk) during those requests, per request and per event;
   the median of ``--runs`` runs (each a slice of the requests), with their min-max.
3. **A generated year**: the events of step 1, copied into the 12 months before this one by
   ``tests.support.audit_history.append_history`` (each month its partition, made as migration
   0021 makes them; ``--per-month`` events each; the kinds in the ``--mix`` of requests), then per
   month its size on disk (after VACUUM, as autovacuum leaves it), its archive file
   (``gateway.audit.archive_file.ArchiveWriter``, the rows selected as ``gateway audit archive``
   selects them) and the compression; then ``gateway.audit.chain.verify_chain`` over the whole
   trail (as ``gateway_audit_reader``), timed, and again from the chains' heads before the last
   month (a checkpoint: the nightly verify's incremental walk).
4. **The archive command**: ``gateway.audit.archive.archive_before`` on the oldest month (what
   ``gateway audit archive`` runs: write, put in a folder, read back and check every event,
   record, close, detach concurrently, drop), timed with the CPU of both sides; then
   ``verify_full`` with that month read from its file.
5. **Projections** at 10, 100 and 1,000 requests/s of the mix: the database's bytes per day,
   month and year and for the ``--live-months`` kept live, the archives' bytes per year, the
   verify time per day of traffic, the archive command's time per month, and the audit writes
   in flight. These are arithmetic on the
   measured figures, not measurements.

Prints the tables and writes ``bench/out/audit_capacity.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import random
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench.cpu import postmaster_pid
from bench.run import (
    DURABILITY,
    OPERATIONS,
    OUT,
    WORK,
    _disk,
    build_requests,
    callers,
    commit,
    gateway_environment,
    prepare_database,
)

KINDS = ("Q1", "Q2", "Q3", "Q4", "playback")
DEFAULT_MIX = "Q1=30,Q2=20,Q3=25,Q4=0.1,playback=24.9"
RATES = (10, 100, 1000)
DAYS_PER_MONTH = 365.25 / 12
HERE = WORK / "audit_capacity"

# The templates append_history copies: every column it reads, the JSON as text.
TEMPLATES = """
select id, request_id, kind, issuer, subject, role, actor_id, patient_id, client_id,
       break_glass_reason, objects::text as objects, detail::text as detail,
       object_groups::text as object_groups, object_sets, object_counts, object_ids
from data.access_events where id > $1 and id <= $2 order by id
"""
SIZES = """
select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint as total,
       coalesce(sum(pg_relation_size(c.oid, 'main') + pg_relation_size(c.oid, 'fsm')
                    + pg_relation_size(c.oid, 'vm')), 0)::bigint as heap,
       coalesce(sum(pg_table_size(c.oid) - pg_relation_size(c.oid, 'main')
                    - pg_relation_size(c.oid, 'fsm') - pg_relation_size(c.oid, 'vm')),
                0)::bigint as toast,
       coalesce(sum(pg_indexes_size(c.oid)), 0)::bigint as indexes,
       count(*) as partitions
from pg_partition_tree('data.access_events') t
join pg_class c on c.oid = t.relid
where t.isleaf {where}
"""
# The relations of the partition this month's events go to: its heap, its TOAST table and that
# table's index, its indexes (each grows by whole pages).
RELATIONS_PER_PARTITION = """
select 1 + (c.reltoastrelid <> 0)::int * 2
       + (select count(*) from pg_index i where i.indrelid = c.oid)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'audit_partitions' and c.relname = $1
"""


# -- the gateway in this process, its audit writer timed ------------------------------------------


class WriteTimer:
    """Wraps ``AccessEventWriter.write``: the wall time and event count of every call that
    stores events (a browser playback's later requests store none: not counted)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []

    def install(self) -> None:
        from gateway.audit.writer import AccessEventWriter

        original = AccessEventWriter.write
        calls = self.calls

        async def write(self: Any, events: list[dict[str, Any]], **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(self, events, **kwargs)
            finally:
                if events:
                    calls.append((time.perf_counter() - started, len(events)))

        AccessEventWriter.write = write  # type: ignore[method-assign]


class Gateway:
    """Sends the bench's requests to the app over ASGI and checks every answer."""

    def __init__(self, client: httpx.AsyncClient, requests: dict[str, list[tuple[dict, bytes]]]):
        self.client = client
        self.requests = requests
        self.playback: list[tuple[str, dict]] = []

    async def graphql(self, headers: dict, body: bytes) -> dict:
        response = await self.client.post("/graphql", content=body, headers=headers)
        if response.status_code != 200 or b'"errors"' in response.content:
            raise SystemExit(f"{response.status_code}: {response.text[:500]}")
        return response.json()

    async def collect_playback(self) -> None:
        """A signed URL of one recording per caller (from their Q2 page; 300 s to live)."""
        self.playback = []
        for headers, body in self.requests["Q2"][:200]:
            page = await self.graphql(headers, body)
            for edge in page["data"]["consultations"]["edges"]:
                recordings = edge["node"]["recordings"]
                if recordings:
                    url = urlsplit(recordings[0]["playbackUrl"])
                    play = {
                        "Authorization": headers["Authorization"],
                        "Range": "bytes=0-65535",
                    }
                    self.playback.append((f"{url.path}?{url.query}", play))
                    break
        if not self.playback:
            raise SystemExit("no recording to play")

    async def send(self, kind: str, index: int) -> float:
        started = time.perf_counter()
        if kind == "playback":
            path, headers = self.playback[index % len(self.playback)]
            response = await self.client.get(path, headers=headers)
            if response.status_code not in (200, 206):
                raise SystemExit(f"playback {response.status_code}: {response.text[:300]}")
        else:
            headers, body = self.requests[kind][index % len(self.requests[kind])]
            await self.graphql(headers, body)
        return time.perf_counter() - started


def _split(raw: bytes) -> tuple[dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers.pop("Content-Length", None)
    return headers, body


# -- measurements ---------------------------------------------------------------------------------


async def sizes(admin: asyncpg.Connection, name: str | None = None) -> dict[str, int]:
    where = "and c.relname = $1" if name else ""
    row = await admin.fetchrow(SIZES.format(where=where), *((name,) if name else ()))
    return dict(row)


async def measure_slice(
    gateway: Gateway, admin: asyncpg.Connection, timer: WriteTimer, kind: str, count: int, at: int
) -> dict[str, Any]:
    """``count`` requests of one kind (callers from ``at`` on): the trail's growth, the events
    written and the audit writes' times."""
    if kind == "playback":
        await gateway.collect_playback()  # fresh URLs (300 s to live); their Q2s come before
    await admin.execute("vacuum data.access_events")
    before = await sizes(admin)
    first = await admin.fetchval("select coalesce(max(id), 0) from data.access_events")
    del timer.calls[:]
    latencies = [await gateway.send(kind, index) for index in range(at, at + count)]
    calls = list(timer.calls)
    if len(calls) != count:
        raise SystemExit(f"{kind}: {len(calls)} audit writes for {count} requests")
    last = await admin.fetchval("select coalesce(max(id), 0) from data.access_events")
    await admin.execute("vacuum data.access_events")
    after = await sizes(admin)
    events = sum(n for _, n in calls)
    return {
        "requests": count,
        "events": events,
        "first_id": first,
        "last_id": last,
        "growth": {
            part: after[part] - before[part] for part in ("total", "heap", "toast", "indexes")
        },
        "write_ms_per_request": statistics.median(t * 1000 for t, _ in calls),
        "write_us_per_event": statistics.median(t / n * 1e6 for t, n in calls),
        "write_us_per_event_mean": sum(t for t, _ in calls) / events * 1e6,
        "request_ms": latencies,
    }


async def measure_kinds(
    gateway: Gateway, admin: asyncpg.Connection, timer: WriteTimer, args: Any
) -> dict[str, dict[str, Any]]:
    """Items 1 and 2: ``--runs`` runs, each a slice of every kind's requests in turn (so that a
    slow spell of the disk falls on every kind alike)."""
    slices: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for run in range(args.runs):
        for kind in KINDS:
            count = max(1, (args.q4_requests if kind == "Q4" else args.requests) // args.runs)
            slices[kind].append(
                await measure_slice(gateway, admin, timer, kind, count, run * count)
            )
        print(f"run {run + 1}/{args.runs} done", flush=True)
    relations = await admin.fetchval(
        RELATIONS_PER_PARTITION, partition_name(datetime.now(UTC).replace(day=1))
    )
    measured = {}
    for kind, runs in slices.items():
        ranges = [(r["first_id"], r["last_id"]) for r in runs]
        templates = [row for a, b in ranges for row in await admin.fetch(TEMPLATES, a, b)]
        events, requests = len(templates), sum(r["requests"] for r in runs)
        if events != sum(r["events"] for r in runs):
            raise SystemExit(
                f"{kind}: the trail holds {events} events, the writer wrote "
                f"{sum(r['events'] for r in runs)} (someone else writing?)"
            )
        growth = {part: sum(r["growth"][part] for r in runs) for part in runs[0]["growth"]}
        archive = await archive_sample(admin, kind, [row["id"] for row in templates])

        def spread(key: str, runs: list[dict[str, Any]] = runs) -> list[float]:
            return [min(r[key] for r in runs), max(r[key] for r in runs)]

        summary = {
            "requests": requests,
            "events": events,
            "events_per_request": events / requests,
            "bytes_per_event": growth["total"] / events,
            "heap_bytes_per_event": growth["heap"] / events,
            "toast_bytes_per_event": growth["toast"] / events,
            "index_bytes_per_event": growth["indexes"] / events,
            # each slice's growth is whole pages: at most one page per relation per slice
            "resolution_bytes_per_event": relations * 8192 * len(runs) / events,
            "bytes_per_request": growth["total"] / requests,
            "archive_bytes_per_event": archive / events,
            "write_ms_per_request": statistics.median(r["write_ms_per_request"] for r in runs),
            "write_ms_per_request_range": spread("write_ms_per_request"),
            "write_us_per_event": statistics.median(r["write_us_per_event"] for r in runs),
            "write_us_per_event_range": spread("write_us_per_event"),
            "request_ms": statistics.median(t for r in runs for t in r["request_ms"]) * 1000,
            "runs": [{k: v for k, v in r.items() if k != "request_ms"} for r in runs],
        }
        print(
            f"{kind}: {requests} requests, {events} events, "
            f"{summary['bytes_per_event']:.0f} B/event, "
            f"write {summary['write_ms_per_request']:.2f} ms/request",
            flush=True,
        )
        measured[kind] = {"summary": summary, "templates": templates}
    return measured


async def archive_sample(admin: asyncpg.Connection, kind: str, ids: list[int]) -> int:
    """The compressed bytes of one kind's events in an archive file of their own."""
    from gateway.audit.archive import MONTH_ROWS
    from gateway.audit.archive_file import ArchiveWriter

    path = HERE / "archives" / f"sample_{kind}.jsonl.gz"
    writer = ArchiveWriter(path, {"partition": f"sample_{kind}"})
    query = MONTH_ROWS.format(name="x").replace(
        "from audit_partitions.x", "from data.access_events where id = any($1::bigint[])"
    )
    async with admin.transaction():
        async for row in admin.cursor(query, ids, prefetch=2000):
            writer.write(row)
    writer.close()
    return path.stat().st_size


def past_months(count: int) -> list[datetime]:
    start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    for _ in range(count):
        start = (start - timedelta(days=1)).replace(day=1)
        months.append(start)
    return months[::-1]


def partition_name(month: datetime) -> str:
    return f"access_events_{month:%Y_%m}"


async def make_partition(admin: asyncpg.Connection, month: datetime) -> None:
    """A past month's partition, as migration 0021 makes them (as the owner); kept if there."""
    name = partition_name(month)
    exists = await admin.fetchval(
        "select true from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'audit_partitions' and c.relname = $1",
        name,
    )
    if exists:
        return
    end = (month + timedelta(days=32)).replace(day=1)
    await admin.execute("set role gateway_owner")
    try:
        await admin.execute(
            f"create table audit_partitions.{name} partition of data.access_events "
            f"for values from ('{month.isoformat()}') to ('{end.isoformat()}')"
        )
    finally:
        await admin.execute("reset role")


def mixed_templates(
    measured: dict[str, dict], mix: dict[str, float], size: int, seed: int = 26
) -> tuple[list[Any], dict[str, float]]:
    """A pool of templates in which each kind's share of events is its share of requests times
    its events per request (append_history picks from the pool uniformly)."""
    chance = random.Random(seed)
    weights = {k: mix[k] * measured[k]["summary"]["events_per_request"] for k in mix if mix[k]}
    total = sum(weights.values())
    pool: list[Any] = []
    for kind, weight in weights.items():
        pool += chance.choices(measured[kind]["templates"], k=round(size * weight / total))
    chance.shuffle(pool)
    return pool, {k: w / total for k, w in weights.items()}


async def write_archive(admin: asyncpg.Connection, month: datetime) -> dict[str, Any]:
    from gateway.audit.archive import write_month

    name = partition_name(month)
    path = HERE / "archives" / f"{name}.jsonl.gz"
    started, cpu = time.perf_counter(), time.process_time()
    async with admin.transaction(isolation="repeatable_read", readonly=True):
        header = await write_month(admin, name, path)  # what `gateway audit archive` writes
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    plain = 0
    with gzip.open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            plain += len(chunk)
    return {
        "events": header["events"],
        "archive_bytes": path.stat().st_size,
        "uncompressed_bytes": plain,
        "write_seconds": seconds,
        "write_cpu_seconds": cpu,
    }


async def timed_verify(
    admin: asyncpg.Connection, postgres: int, since: Any = None
) -> dict[str, Any]:
    """verify_chain as the nightly CronJob's role, timed (wall, and the CPU of this process and
    of PostgreSQL's processes); retried once after a minute if it fails to run (another engineer
    may be editing the module)."""
    from gateway.audit.chain import verify_chain

    for attempt in range(2):
        await admin.execute("set role gateway_audit_reader")
        try:
            report, figures = await _timed(postgres, verify_chain(admin, since))
            return _verified(report, figures)
        except Exception as exc:
            if attempt:
                return {"error": repr(exc)}
            print(f"verify_chain failed ({exc!r}); retrying in a minute", flush=True)
            await asyncio.sleep(60)
        finally:
            await admin.execute("reset role")
    return {"error": "unreachable"}


async def timed_archive(
    admin: asyncpg.Connection, postgres: int, months: list[datetime]
) -> dict[str, Any]:
    """``gateway audit archive`` of the oldest month (what the command runs), timed, and
    ``gateway audit verify --full`` after it, its archive read from the folder."""
    from gateway.audit.archive import archive_before, verify_full
    from gateway.audit.archive_store import FolderStore

    store = FolderStore(HERE / "archives" / "store")
    (archived, dropped, left), figures = await _timed(
        postgres, archive_before(admin, store, months[1], "bench")
    )
    events = sum(done.events for done in archived)
    (report, _), verify_figures = await _timed(postgres, verify_full(admin, store))
    return {
        "months": [done.partition for done in archived],
        "dropped": dropped,
        "left": left,
        "events": events,
        **figures,
        "events_per_second": events / figures["seconds"] if figures["seconds"] else float("nan"),
        "verify_full": _verified(report, verify_figures),
    }


async def _timed(postgres: int, work: Any) -> tuple[Any, dict[str, float]]:
    """``work``'s result, and its wall time and the CPU of this process and of PostgreSQL's."""
    from bench.cpu import cpu_seconds

    started, cpu, db = time.perf_counter(), time.process_time(), cpu_seconds(postgres)
    result = await work
    return result, {
        "seconds": time.perf_counter() - started,
        "client_cpu_seconds": time.process_time() - cpu,
        "postgres_cpu_seconds": cpu_seconds(postgres) - db,
    }


def _verified(report: Any, figures: dict[str, float]) -> dict[str, Any]:
    seconds = figures["seconds"]
    return {
        "intact": report.intact,
        "events": report.events,
        "message": report.message,
        **figures,
        "events_per_second": report.events / seconds if seconds else float("nan"),
    }


# -- projections ------------------------------------------------------------------------------


def projections(result: dict[str, Any], mix: dict[str, float], live_months: int) -> list[dict]:
    kinds = result["kinds"]
    share = {k: v / sum(mix.values()) for k, v in mix.items()}
    events_per_request = sum(share[k] * kinds[k]["events_per_request"] for k in share)
    year = result["year"]
    db_bytes_per_event = year["bytes_per_event_median"]
    archive_bytes_per_event = year["archive_bytes_per_event_median"]
    verify_rate = year["verify_full"].get("events_per_second") or float("nan")
    incremental_rate = year["verify_incremental"].get("events_per_second") or float("nan")
    write_ms = sum(share[k] * kinds[k]["write_ms_per_request"] for k in share)
    # The whole command (write, read back and check, drop), not the file's writing alone.
    archive_rate = year["archive_command"]["events_per_second"]
    out = []
    for rate in RATES:
        events_per_day = rate * 86400 * events_per_request
        day = events_per_day * db_bytes_per_event
        out.append(
            {
                "requests_per_second": rate,
                "events_per_second": rate * events_per_request,
                "events_per_day": events_per_day,
                "db_bytes_per_day": day,
                "db_bytes_per_month": day * DAYS_PER_MONTH,
                "db_bytes_per_year": day * 365.25,
                "db_bytes_live": day * DAYS_PER_MONTH * live_months,
                "live_months": live_months,
                "archive_bytes_per_year": events_per_day * 365.25 * archive_bytes_per_event,
                "verify_seconds_per_day_full_walk": events_per_day / verify_rate,
                "verify_seconds_per_day_incremental": events_per_day / incremental_rate,
                "archive_seconds_per_month": events_per_day * DAYS_PER_MONTH / archive_rate,
                "audit_writes_in_flight": rate * write_ms / 1000,
            }
        )
    return out


# -- report -----------------------------------------------------------------------------------


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]


def _bytes(value: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def report(result: dict[str, Any]) -> str:
    kinds, year = result["kinds"], result["year"]
    lines = [
        f"{result['machine']}",
        f"commit: {result['commit']}",
        "PostgreSQL "
        + ", ".join(f"{k} {v}" for k, v in result["server"].items())
        + f"; data on {result['disk']}",
        f"data set: {result['patients']} patients x 50 consultations, {result['clinicians']} "
        f"clinicians; mix of requests: {result['mix_text']}",
        "",
        "MEASURED 1-2: real requests through the gateway (in process, one at a time); size = "
        "pg_total_relation_size of every partition, delta / events; write = AccessEventWriter."
        f"write wall time, median of {result['runs']} runs (min-max)",
    ]
    lines += _table(
        (
            "kind", "requests", "events/req", "B/event", "heap", "toast", "indexes", "+-",
            "B/request", "archive B/event", "write ms/req", "write us/event", "request ms",
        ),
        [
            (
                kind,
                str(k["requests"]),
                f"{k['events_per_request']:.1f}",
                f"{k['bytes_per_event']:.0f}",
                f"{k['heap_bytes_per_event']:.0f}",
                f"{k['toast_bytes_per_event']:.0f}",
                f"{k['index_bytes_per_event']:.0f}",
                f"{k['resolution_bytes_per_event']:.0f}",
                f"{k['bytes_per_request']:.0f}",
                f"{k['archive_bytes_per_event']:.0f}",
                f"{k['write_ms_per_request']:.2f} ({k['write_ms_per_request_range'][0]:.2f}-"
                f"{k['write_ms_per_request_range'][1]:.2f})",
                f"{k['write_us_per_event']:.0f} ({k['write_us_per_event_range'][0]:.0f}-"
                f"{k['write_us_per_event_range'][1]:.0f})",
                f"{k['request_ms']:.1f}",
            )
            for kind, k in kinds.items()
        ],
    )  # fmt: skip
    lines += [
        "",
        f"MEASURED 3: a generated year, {year['per_month']} events per month (append_history, "
        f"events of the mix: {result['event_mix_text']}); sizes after VACUUM; archive = "
        "ArchiveWriter's gzip JSON Lines",
    ]
    lines += _table(
        (
            "partition", "events", "on disk", "B/event", "heap", "toast", "indexes",
            "archive", "archive B/event", "JSONL:gzip", "disk:archive", "generate s", "archive s",
        ),
        [
            (
                m["partition"],
                str(m["events"]),
                _bytes(m["total"]),
                f"{m['bytes_per_event']:.0f}",
                _bytes(m["heap"]),
                _bytes(m["toast"]),
                _bytes(m["indexes"]),
                _bytes(m["archive_bytes"]),
                f"{m['archive_bytes'] / m['events']:.0f}",
                f"{m['uncompressed_bytes'] / m['archive_bytes']:.1f}",
                f"{m['total'] / m['archive_bytes']:.1f}",
                f"{m['generate_seconds']:.1f}",
                f"{m['write_seconds']:.1f}",
            )
            for m in year["months"]
        ],
    )  # fmt: skip
    full, incremental = year["verify_full"], year["verify_incremental"]

    def verify_line(name: str, v: dict) -> str:
        if "error" in v:
            return f"{name}: FAILED TO RUN: {v['error']}"
        return (
            f"{name}: {v['events']} events in {v['seconds']:.1f} s, "
            f"{v['events_per_second']:.0f} events/s, "
            f"{1e6 / v['events_per_second']:.0f} s per million (CPU per million: verifier "
            f"{v['client_cpu_seconds'] / v['events'] * 1e6:.0f} s, PostgreSQL "
            f"{v['postgres_cpu_seconds'] / v['events'] * 1e6:.0f} s); {v['message']}"
            + ("" if v["intact"] else " (NOT INTACT)")
        )

    def archive_line(a: dict) -> str:
        return (
            f"gateway audit archive ({', '.join(a['months'])}): {a['events']} events in "
            f"{a['seconds']:.1f} s, {a['events_per_second']:.0f} events/s (CPU per million: "
            f"gateway {a['client_cpu_seconds'] / a['events'] * 1e6:.0f} s, PostgreSQL "
            f"{a['postgres_cpu_seconds'] / a['events'] * 1e6:.0f} s); dropped "
            f"{', '.join(a['dropped']) or 'none'}, left {', '.join(a['left']) or 'none'}"
        )

    lines += [
        f"partitions per year: 12; per month median {_bytes(year['month_bytes_median'])} on disk "
        f"({year['bytes_per_event_median']:.0f} B/event), archive "
        f"{_bytes(year['archive_bytes_median'])} ({year['archive_bytes_per_event_median']:.0f} "
        f"B/event, {year['compression_median']:.1f}x smaller than the JSON, "
        f"{year['disk_to_archive_median']:.1f}x smaller than on disk); archive written at "
        f"{year['archive_events_per_second_median']:.0f} events/s (CPU "
        f"{year['archive_cpu_seconds_per_million_median']:.0f} s per million)",
        verify_line("verify_chain, whole trail", full),
        verify_line("verify_chain, from a checkpoint before the last month", incremental),
        archive_line(year["archive_command"]),
        verify_line(
            "verify --full, the oldest month archived", year["archive_command"]["verify_full"]
        ),
        "",
        f"PROJECTED 4 (arithmetic on the figures above; mix {result['mix_text']}, "
        f"{result['events_per_request_mix']:.2f} events per request; "
        f"{result['live_months']} months live)",
    ]
    lines += _table(
        (
            "req/s", "events/s", "DB/day", "DB/month", "DB/year",
            f"DB live ({result['live_months']} mo)", "archive/year", "verify/day (walk)",
            "verify/day (incr.)", "archive/month", "writes in flight",
        ),
        [
            (
                str(p["requests_per_second"]),
                f"{p['events_per_second']:.0f}",
                _bytes(p["db_bytes_per_day"]),
                _bytes(p["db_bytes_per_month"]),
                _bytes(p["db_bytes_per_year"]),
                _bytes(p["db_bytes_live"]),
                _bytes(p["archive_bytes_per_year"]),
                _duration(p["verify_seconds_per_day_full_walk"]),
                _duration(p["verify_seconds_per_day_incremental"]),
                _duration(p["archive_seconds_per_month"]),
                f"{p['audit_writes_in_flight']:.2f}",
            )
            for p in result["projections"]
        ],
    )  # fmt: skip
    before, after = result["load_average_before"], result["load_average_after"]
    phases = ", ".join(f"{k} {v / 60:.1f}" for k, v in result["phase_seconds"].items())
    lines += [
        "",
        f"run took {result['elapsed_seconds'] / 60:.1f} min (minutes: {phases}); load average "
        f"(1, 5, 15 min) before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, after "
        f"{after[0]:.2f} {after[1]:.2f} {after[2]:.2f} (anything else running moves the times)",
    ]
    return "\n".join(lines)


# -- the run ----------------------------------------------------------------------------------


def _parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        kind, _, share = part.partition("=")
        if kind not in KINDS:
            raise SystemExit(f"--mix: {kind!r} is not one of {', '.join(KINDS)}")
        mix[kind] = float(share)
    return mix


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.dev.embedded import EmbeddedPostgres
    from gateway.dev.identity import DevIdentity
    from gateway.guards.trusted_documents import build_manifest
    from resolvers import build_schema
    from tests.support.audit_history import append_history

    begun = time.perf_counter()
    result: dict[str, Any] = {"commit": commit(), "load_average_before": os.getloadavg()}
    HERE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(HERE / "archives", ignore_errors=True)
    shutil.rmtree(HERE / "pg", ignore_errors=True)  # a trail of this run's only
    (HERE / "archives").mkdir()
    identity = DevIdentity.load_or_create(WORK / "identity")
    cluster = EmbeddedPostgres(HERE, fast=False)
    server_url = cluster.start()
    placement = "not pinned"
    phases: dict[str, float] = {}
    result["phase_seconds"] = phases
    if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
        from bench.cpu import pin

        os.sched_setaffinity(0, {0})
        pin(postmaster_pid(cluster.data), "1")
        placement = "this process (gateway, client, generator, verify) on core 0, PostgreSQL on 1"
    try:
        phase = time.perf_counter()
        admin_url, app_url = await prepare_database(
            server_url, args.patients, args.clinicians, 50, identity.issuer
        )
        phases["prepare"] = time.perf_counter() - phase
        admin = await asyncpg.connect(admin_url)
        names = (
            "server_version", *DURABILITY, "shared_buffers", "max_wal_size", "wal_compression",
            "default_toast_compression",
        )  # fmt: skip
        result["server"] = {name: await admin.fetchval(f"show {name}") for name in names}
        if result["server"]["fsync"] != "on" or result["server"]["synchronous_commit"] != "on":
            raise SystemExit(f"not durable: {result['server']}")
        result["disk"] = _disk(cluster.data)
        result["machine"] = (
            f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores "
            f"({placement})"
        )
        result |= {
            "patients": args.patients,
            "clinicians": args.clinicians,
            "runs": args.runs,
            "live_months": args.live_months,
            "mix_text": args.mix,
        }
        mix = _parse_mix(args.mix)

        people = await callers(admin_url, 200)
        tokens = {p["subject"]: identity.token(p["subject"], ttl=6 * 3600) for p in people}
        support = identity.token("support-0001", ttl=6 * 3600)
        built = build_manifest([OPERATIONS], build_schema()._schema)
        (HERE / "manifest.json").write_text(json.dumps(built))
        manifest = {o["name"]: o["id"] for o in built["operations"]}
        os.environ.update(
            {
                **gateway_environment(app_url, identity, HERE / "manifest.json", 10),
                "GATEWAY_LOG_LEVEL": "warning",
            }
        )
        timer = WriteTimer()
        timer.install()
        from gateway.app import create_app_from_environment

        app = create_app_from_environment()
        requests = {
            query: [
                _split(raw)
                for raw in build_requests(
                    "gateway", 0, query, people, tokens, support, manifest, len(people)
                )
            ]
            for query in ("Q1", "Q2", "Q3", "Q4")
        }
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client,
        ):
            gateway = Gateway(client, requests)
            await gateway.collect_playback()
            for kind in KINDS:  # warm-up: plans, caches, pools, field sets
                for index in range(20):
                    await gateway.send(kind, index)
            phase = time.perf_counter()
            measured = await measure_kinds(gateway, admin, timer, args)
            phases["requests"] = time.perf_counter() - phase
        result["kinds"] = {kind: m["summary"] for kind, m in measured.items()}
        share = {k: v / sum(mix.values()) for k, v in mix.items()}
        result["events_per_request_mix"] = sum(
            share[k] * result["kinds"][k]["events_per_request"] for k in share
        )

        # 3. A year.
        patients = [row[0] for row in await admin.fetch("select id from data.patients")]
        phase = time.perf_counter()
        pool, event_mix = mixed_templates(measured, mix, 20000)
        result["event_mix"] = event_mix
        result["event_mix_text"] = ", ".join(f"{k} {v:.1%}" for k, v in event_mix.items())
        months = past_months(12)
        for month in months:
            await make_partition(admin, month)
        year: dict[str, Any] = {"per_month": args.per_month, "months": []}
        checkpoint = None
        for number, month in enumerate(months):
            if number == len(months) - 1:
                from gateway.audit.chain import heads

                checkpoint = await heads(admin)
            started = time.perf_counter()
            written = await append_history(
                admin, pool, [month], args.per_month, patients, seed=26 + number
            )
            seconds = time.perf_counter() - started
            print(f"{partition_name(month)}: {written} events in {seconds:.1f} s", flush=True)
            year["months"].append(
                {"partition": partition_name(month), "events": written, "generate_seconds": seconds}
            )
        phases["year_generate"] = time.perf_counter() - phase
        phase = time.perf_counter()
        for entry, month in zip(year["months"], months, strict=True):
            await admin.execute(f"vacuum (analyze) audit_partitions.{entry['partition']}")
            entry |= await sizes(admin, entry["partition"])
            entry["bytes_per_event"] = entry["total"] / entry["events"]
            entry |= await write_archive(admin, month)
            print(
                f"{entry['partition']}: {_bytes(entry['total'])} on disk, archive "
                f"{_bytes(entry['archive_bytes'])} in {entry['write_seconds']:.1f} s",
                flush=True,
            )
        phases["year_archives"] = time.perf_counter() - phase
        await admin.execute("checkpoint")
        phase = time.perf_counter()
        postgres = postmaster_pid(cluster.data)
        year["verify_full"] = await timed_verify(admin, postgres)
        print(f"verify (whole trail): {year['verify_full']}", flush=True)
        year["verify_incremental"] = await timed_verify(admin, postgres, checkpoint)
        phases["verify"] = time.perf_counter() - phase
        print(f"verify (from the checkpoint): {year['verify_incremental']}", flush=True)
        entries = year["months"]
        year |= {
            "month_bytes_median": statistics.median(m["total"] for m in entries),
            "bytes_per_event_median": statistics.median(m["bytes_per_event"] for m in entries),
            "archive_bytes_median": statistics.median(m["archive_bytes"] for m in entries),
            "archive_bytes_per_event_median": statistics.median(
                m["archive_bytes"] / m["events"] for m in entries
            ),
            "compression_median": statistics.median(
                m["uncompressed_bytes"] / m["archive_bytes"] for m in entries
            ),
            "disk_to_archive_median": statistics.median(
                m["total"] / m["archive_bytes"] for m in entries
            ),
            "archive_events_per_second_median": statistics.median(
                m["events"] / m["write_seconds"] for m in entries
            ),
            "archive_cpu_seconds_per_million_median": statistics.median(
                m["write_cpu_seconds"] / m["events"] * 1e6 for m in entries
            ),
            "partitions_per_year": 12,
            "trail_events": await admin.fetchval("select count(*) from data.access_events"),
            "trail_bytes": (await sizes(admin))["total"],
        }
        # 4. The archive command itself on the oldest month (write, read back and check, the
        # catalog, close, detach concurrently, drop), then --full with that month archived.
        phase = time.perf_counter()
        year["archive_command"] = await timed_archive(admin, postgres, months)
        print(f"gateway audit archive (one month): {year['archive_command']}", flush=True)
        phases["archive_command"] = time.perf_counter() - phase
        result["year"] = year
        result["projections"] = projections(result, mix, args.live_months)
        await admin.close()
    finally:
        cluster.stop()
    result["elapsed_seconds"] = time.perf_counter() - begun
    result["load_average_after"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--clinicians", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000, help="per kind of request")
    parser.add_argument(
        "--q4-requests", type=int, default=400, help="of Q4 (hundreds of events each)"
    )
    parser.add_argument("--runs", type=int, default=5, help="the requests of a kind, in runs")
    parser.add_argument("--per-month", type=int, default=100_000, help="events per month")
    parser.add_argument("--mix", default=DEFAULT_MIX, help="share of requests by kind")
    parser.add_argument("--live-months", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="200 patients, 200 requests (Q4 50), 12 x 5,000"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.patients, args.clinicians, args.per_month = 200, 40, 5000
        args.requests, args.q4_requests = 200, 50
    result = asyncio.run(_run(args))
    result["quick"] = args.quick
    text = report(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audit_capacity.json").write_text(json.dumps(result, indent=1, default=str))
    (args.out / "audit_capacity.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
