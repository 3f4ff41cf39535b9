"""Verifying the audit trail's hash chains, independently of the database's own functions.

Each event's hash is SHA-256 over its predecessor's hash and its canonical text: every field as
"<length>:<text>" (or "N" for null), concatenated; times in UTC to the microsecond, JSON as
PostgreSQL prints jsonb. No separator or null can be confused with content. An event stored
compactly (migration 0016) adds its ``object_groups`` as one more such field, then
"<16 x the number of ids>:" and its ``object_ids`` as their 16 bytes each. Since migration 0017
the groups name their field sets by id (``object_sets``, ``object_counts``); the hash covers the
same text, ``[[type, fields, count], ...]``, read here from ``data.audit_field_sets``, so a
field set changed afterwards breaks every event that names it.

Events written before migration 0012 form one chain, ordered by ``seq``, whose head row
(``audit_chain_head``) holds its last sequence number and hash. Since then every event belongs to
one of the chains of ``audit_chains`` (so that writers never wait for each other): its hash also
covers its chain and its position in it, positions run 1, 2, 3 ... without a gap, and the chain's
head row holds the last position and hash. Removing an event from the middle of a chain breaks
the next link; removing events from its end disagrees with the head.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import asyncpg

__all__ = [
    "GENESIS",
    "LIVE",
    "ChainReport",
    "ChainWalk",
    "Held",
    "Link",
    "chain_genesis",
    "event_hash",
    "event_link",
    "lock_trail",
    "run_link",
    "verify_chain",
    "walk_from",
    "walk_trail",
]

GENESIS = hashlib.sha256(b"consultation-gateway audit").digest()

_COLUMNS = """id, seq, chain_id, chain_seq, occurred_at, request_id, kind, issuer, subject, role,
       actor_id, patient_id, client_id, break_glass_reason, objects, detail, object_groups,
       object_sets, object_counts, object_ids, prev_hash, hash"""
# The months still in the database: a month archived is read from its archive (its runs), even
# while its partition waits to be dropped (``gateway.audit.archive``). The months are archived
# oldest first, so those archived are exactly those before the last archived one's end.
LIVE = "occurred_at >= (select coalesce(max(period_end), '-infinity') from data.audit_archives)"
_FIRST_CHAIN = f"""
select {_COLUMNS} from data.access_events
where chain_id is null and seq is not null and seq > $1 and {LIVE} order by seq
"""
_CHAINED = f"""
select {_COLUMNS} from data.access_events
where chain_id is not null and {LIVE} order by chain_id, chain_seq
"""
_ONE_CHAIN = f"""
select {_COLUMNS} from data.access_events
where chain_id = $1 and chain_seq > $2 and {LIVE} order by chain_seq
"""
_HEADS = """
select 0 as chain, last_seq, last_hash from data.audit_chain_head where id = 1
union all
select id, last_seq, last_hash from data.audit_chains
"""
_ARCHIVED_RUNS = """
select a.partition_name, a.location, a.deleted_at is not null as deleted, r.run
from data.audit_archives a, jsonb_array_elements(a.runs) r(run)
order by a.period_start
"""


@dataclass(frozen=True, slots=True)
class ChainReport:
    intact: bool
    events: int
    message: str


def chain_genesis(chain: int) -> bytes:
    return hashlib.sha256(f"consultation-gateway audit chain {chain}".encode()).digest()


def _field(value: object) -> str:
    if value is None:
        return "N"
    text = str(value)
    return f"{len(text)}:{text}"


def event_hash(prev: bytes, row: Any) -> bytes:
    occurred = row["occurred_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    position = (row["chain_id"], row["chain_seq"]) if row["chain_id"] is not None else ()
    canonical = "".join(
        _field(value)
        for value in (
            *position,
            row["seq"],
            occurred,
            row["request_id"],
            row["kind"],
            row["issuer"],
            row["subject"],
            row["role"],
            row["actor_id"],
            row["patient_id"],
            row["client_id"],
            row["break_glass_reason"],
            row["objects"],
            row["detail"],
        )
    )
    data = prev + canonical.encode()
    ids = row.get("object_ids")
    if ids is not None:  # since migration 0016: the groups as text, the ids as 16 bytes each
        data += f"{_field(row['object_groups'])}{16 * len(ids)}:".encode()
        data += _id_bytes(ids)
    return hashlib.sha256(data).digest()


def _id_bytes(ids: list[Any]) -> bytes:
    """The ids' 16 bytes each: uuids as the database gives them, or their text as an archive
    holds it (``gateway.audit.archive_file``: checked there as uuids in canonical form)."""
    if ids and isinstance(ids[0], str):
        return bytes.fromhex("".join(ids).replace("-", ""))
    return b"".join(object_id.bytes for object_id in ids)


@dataclass(frozen=True, slots=True)
class Link:
    """One step of a chain: an event (``first == last``), or a run of archived events whose
    inside was verified when they were archived (its hashes at its two edges). Chain 0 is the
    chain of the events before the chains, positioned by ``seq``."""

    chain: int
    first: int
    last: int
    prev_hash: bytes
    hash: bytes
    where: str
    altered: bool = False


Tails = dict[int, tuple[int, bytes]]
"""Per chain, the last position verified and its hash."""

Held = dict[tuple[int, int], tuple[bytes, str]]
"""Checkpoints: (chain, position) to the hash there and what recorded it ("recorded <when> by
<whom>", "anchored <when> at <where>")."""


def genesis_tails(chains: Iterable[int]) -> Tails:
    return {chain: (0, GENESIS if chain == 0 else chain_genesis(chain)) for chain in chains}


def event_link(row: Any, field_sets: dict[int, tuple[str, list[str]]], where: str = "") -> Link:
    """The event's step, with whether its own hash matches its contents."""
    row = _groups_text(row, field_sets)
    chained = row["chain_id"] is not None
    chain, position = (row["chain_id"], row["chain_seq"]) if chained else (0, row["seq"])
    label = f"chain {chain} position {position}" if chained else f"seq {position}"
    prev, stored = bytes(row["prev_hash"]), bytes(row["hash"])
    return Link(
        chain,
        position,
        position,
        prev,
        stored,
        f"{label} (event id {row['id']}{where})",
        altered=event_hash(prev, row) != stored,
    )


def run_link(run: dict[str, Any], where: str) -> Link:
    """An archived run, as ``data.audit_archives.runs`` and an archive's header hold it."""
    return Link(
        int(run["chain"]),
        int(run["first"]),
        int(run["last"]),
        bytes.fromhex(run["prev_hash"]),
        bytes.fromhex(run["hash"]),
        where,
    )


def _position(chain: int, position: int) -> str:
    return f"chain {chain} position {position}" if chain else f"seq {position}"


class ChainWalk:
    """Links in order of chain and position, each following the last, each chain ending at its
    head row: the first break found is the report. A chain is held against its head when the
    walk leaves it (so a chain's end is reported before the next chain's links). Links at or
    before a chain's starting tail are skipped (a checkpoint's past). An event walked at a
    recorded checkpoint's position (``held``), or a run ending there, must have the checkpoint's
    hash: else the trail was rewritten after it was verified. A chain must reach at least its
    ``floors`` position (an anchored head): else events were removed from its end."""

    def __init__(
        self, tails: Tails, heads: Tails, held: Held | None = None, floors: Tails | None = None
    ) -> None:
        self.start = dict(tails)
        self.tails = dict(tails)
        self.heads = heads
        self.held = held or {}
        self.floors = floors or {}
        self.events = 0
        self.broken: str | None = None
        self._unchecked = sorted(tails)

    def step(self, link: Link) -> bool:
        """Walk one link; False once the chain is broken."""
        if self.broken is not None:
            return False
        if link.chain not in self.tails:
            self.broken = f"broken at {link.where}: no such chain"
            return False
        if not self._left_behind(link.chain):
            return False
        last, previous = self.tails[link.chain]
        start = self.start[link.chain][0]
        if link.first <= start:  # before the checkpoint the walk starts from
            if link.last > start == last:  # an archived run the checkpoint lies in: trusted
                self.tails[link.chain] = (link.last, link.hash)
                self.events += link.last - last
            return True
        if link.first != last + 1:
            self.broken = f"broken at {_position(link.chain, last + 1)}: event missing"
            return False
        if link.prev_hash != previous:
            follows = f"position {last}" if link.chain else f"seq {last}"
            self.broken = f"broken at {link.where}: does not follow {follows}"
            return False
        if link.altered:
            self.broken = f"broken at {link.where}: contents were altered"
            return False
        checkpoint = self.held.get((link.chain, link.last))
        if checkpoint is not None and checkpoint[0] != link.hash:
            self.broken = (
                f"broken at {link.where}: differs from the checkpoint {checkpoint[1]} "
                "(the trail was rewritten after it was verified)"
            )
            return False
        self.tails[link.chain] = (link.last, link.hash)
        self.events += link.last - link.first + 1
        return True

    def _left_behind(self, chain: int) -> bool:
        """Hold every chain before ``chain`` against its head; False at the first that differs."""
        while self._unchecked and self._unchecked[0] < chain:
            done = self._unchecked.pop(0)
            tail, head = self.tails[done], self.heads.get(done)
            if head is not None and head[0] == tail[0] and head[1] != tail[1]:
                self.broken = (  # the head row rewritten (after an anchored head, no event)
                    f"broken at {_position(done, tail[0])}: the chain's head row differs from "
                    "the hash verified there"
                )
                return False
            if head != tail:
                self.broken = f"broken after {_position(done, tail[0])}: events were removed"
                return False
            floor = self.floors.get(done)
            if floor is not None and tail[0] < floor[0]:
                self.broken = (
                    f"broken after {_position(done, tail[0])}: events were removed (the "
                    f"anchor holds {_position(done, floor[0])})"
                )
                return False
        return True

    def end(self) -> ChainReport:
        """The report, every chain held against its head row."""
        if self.broken is None:
            self._left_behind(1 << 62)
        if self.broken is not None:
            return ChainReport(False, self.events, self.broken)
        return ChainReport(True, self.events, f"audit chain intact: {self.events} events")


async def merged(sources: list[AsyncIterator[Link]]) -> AsyncIterator[Link]:
    """The links of several sources, each in order of chain and position, in that order."""
    heap: list[tuple[int, int, int, Link]] = []
    for index, source in enumerate(sources):
        first = await anext(source, None)
        if first is not None:
            heapq.heappush(heap, (first.chain, first.first, index, first))
    while heap:
        _, _, index, link = heapq.heappop(heap)
        yield link
        following = await anext(sources[index], None)
        if following is not None:
            heapq.heappush(heap, (following.chain, following.first, index, following))


async def heads(connection: asyncpg.Connection) -> Tails:
    """Each chain's head row; chain 0's (``audit_chain_head``) always, one that matches no walk
    when its row is missing."""
    found = {
        row["chain"]: (row["last_seq"], bytes(row["last_hash"]))
        for row in await connection.fetch(_HEADS)
    }
    return {0: (-1, b"(no head row)"), **found}


async def live_links(
    connection: asyncpg.Connection, field_sets: dict[int, tuple[str, list[str]]], since: Tails
) -> AsyncIterator[Link]:
    """The trail's events after ``since`` (per chain), in order of chain and position."""
    async for row in connection.cursor(_FIRST_CHAIN, since.get(0, (0, b""))[0], prefetch=1000):
        yield event_link(row, field_sets)
    if all(position == 0 for chain, (position, _) in since.items() if chain):
        async for row in connection.cursor(_CHAINED, prefetch=1000):
            yield event_link(row, field_sets)
        return
    for chain in sorted(c for c in since if c):
        async for row in connection.cursor(_ONE_CHAIN, chain, since[chain][0], prefetch=1000):
            yield event_link(row, field_sets)


async def archived_runs(connection: asyncpg.Connection) -> list[tuple[str, str, bool, Link]]:
    """Every archived run: (partition, location, deleted, its link), by period."""
    return [
        (
            row["partition_name"],
            row["location"],
            row["deleted"],
            run_link(json.loads(row["run"]), f"archive {row['partition_name']}"),
        )
        for row in await connection.fetch(_ARCHIVED_RUNS)
    ]


async def _iterate(links: Iterable[Link]) -> AsyncIterator[Link]:
    for link in links:
        yield link


async def verify_chain(connection: asyncpg.Connection, since: Tails | None = None) -> ChainReport:
    """Walk every chain in order, the archived months by the runs their catalog rows hold (each
    verified when it was archived); report the first broken link. With ``since`` (per chain, a
    position and its hash: a checkpoint), start there."""
    return (await walk_trail(connection, since))[0]


async def walk_trail(
    connection: asyncpg.Connection, since: Tails | None = None, held: Held | None = None
) -> tuple[ChainReport, Tails]:
    """``verify_chain``'s report, and where each chain ended (the next checkpoint)."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        await lock_trail(connection)
        return await walk_from(connection, since, held)


async def lock_trail(connection: asyncpg.Connection) -> None:
    """First in a repeatable-read transaction (before its snapshot): no archived month is
    detached, and so dropped, until it ends (DETACH CONCURRENTLY waits for the trail's lockers),
    so the catalog and the months it reads agree."""
    await connection.execute("lock table only data.access_events in access share mode")


async def walk_from(
    connection: asyncpg.Connection,
    since: Tails | None,
    held: Held | None,
    floors: Tails | None = None,
) -> tuple[ChainReport, Tails]:
    """``walk_trail`` in the caller's (repeatable read) transaction; every chain of ``floors``
    walked (a chain gone is one whose events were removed) to at least its position there."""
    now = await heads(connection)
    tails = genesis_tails(now.keys() | (floors or {}).keys())
    if since:
        tails.update(since)  # a chain verified before and now gone: its events were removed
    runs = sorted(
        (link for _, _, _, link in await archived_runs(connection)),
        key=lambda link: (link.chain, link.first),
    )
    walk = ChainWalk(tails, now, held, floors)
    field_sets = await _field_sets(connection)
    async for link in merged([_iterate(runs), live_links(connection, field_sets, tails)]):
        if not walk.step(link):
            break
    return walk.end(), walk.tails


def _groups_text(row: Any, field_sets: dict[int, tuple[str, list[str]]]) -> Any:
    """The row, with the text of its groups when it names them by field set (as PostgreSQL
    prints the jsonb ``data.audit_groups_text`` makes). Groups the database would refuse (a set
    that does not exist, a count missing or extra, counts that do not add up to the ids) get a
    text no hash was made of: verify reports the event."""
    sets, counts = row["object_sets"], row["object_counts"]
    if sets is None or row["object_groups"] is not None:
        return row
    ids = row["object_ids"] or []
    whole = (
        counts is not None
        and len(sets) == len(counts)
        and all(type(s) is int and s in field_sets for s in sets)
        and all(type(c) is int and c >= 0 for c in counts)
        and sum(counts) == len(ids)
    )
    if not whole:
        return {**dict(row), "object_groups": "(malformed groups)"}
    groups = [[*field_sets[set_id], count] for set_id, count in zip(sets, counts, strict=True)]
    text = json.dumps(groups, ensure_ascii=False) if groups else None
    return {**dict(row), "object_groups": text}


async def _field_sets(connection: asyncpg.Connection) -> dict[int, tuple[str, list[str]]]:
    rows = await connection.fetch("select id, type_name, fields from data.audit_field_sets")
    return {row["id"]: (row["type_name"], list(row["fields"])) for row in rows}
