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
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import asyncpg

__all__ = ["GENESIS", "ChainReport", "chain_genesis", "event_hash", "verify_chain"]

GENESIS = hashlib.sha256(b"consultation-gateway audit").digest()

_COLUMNS = """id, seq, chain_id, chain_seq, occurred_at, request_id, kind, issuer, subject, role,
       actor_id, patient_id, client_id, break_glass_reason, objects, detail, object_groups,
       object_sets, object_counts, object_ids, prev_hash, hash"""
_FIRST_CHAIN = f"""
select {_COLUMNS} from data.access_events
where chain_id is null and seq is not null order by seq
"""
_CHAINED = f"""
select {_COLUMNS} from data.access_events
where chain_id is not null order by chain_id, chain_seq
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
        data += b"".join(object_id.bytes for object_id in ids)
    return hashlib.sha256(data).digest()


async def verify_chain(connection: asyncpg.Connection) -> ChainReport:
    """Walk every chain in order; report the first broken link."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        first = await _first_chain(connection)
        if not first.intact:
            return first
        chained = await _chained(connection)
    if not chained.intact:
        return ChainReport(False, first.events + chained.events, chained.message)
    total = first.events + chained.events
    return ChainReport(True, total, f"audit chain intact: {total} events")


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


async def _first_chain(connection: asyncpg.Connection) -> ChainReport:
    """The events before the chains, one chain by ``seq``, against ``audit_chain_head``."""
    head = await connection.fetchrow(
        "select last_seq, last_hash from data.audit_chain_head where id = 1"
    )
    previous, expected_seq, count = GENESIS, 1, 0
    field_sets = await _field_sets(connection)
    async for row in connection.cursor(_FIRST_CHAIN, prefetch=1000):
        row = _groups_text(row, field_sets)
        where = f"seq {row['seq']} (event id {row['id']})"
        if row["seq"] != expected_seq:
            return ChainReport(False, count, f"broken at seq {expected_seq}: event missing")
        if bytes(row["prev_hash"]) != previous:
            return ChainReport(
                False, count, f"broken at {where}: does not follow seq {expected_seq - 1}"
            )
        if event_hash(previous, row) != bytes(row["hash"]):
            return ChainReport(False, count, f"broken at {where}: contents were altered")
        previous, expected_seq, count = bytes(row["hash"]), expected_seq + 1, count + 1
    if head is None or head["last_seq"] != count or bytes(head["last_hash"]) != previous:
        return ChainReport(False, count, f"broken after seq {count}: events were removed")
    return ChainReport(True, count, "")


async def _chained(connection: asyncpg.Connection) -> ChainReport:
    """Every chain of ``audit_chains``, by position, against its head row."""
    heads = {
        row["id"]: (row["last_seq"], bytes(row["last_hash"]))
        for row in await connection.fetch("select id, last_seq, last_hash from data.audit_chains")
    }
    tails = {chain: (0, chain_genesis(chain)) for chain in heads}
    count = 0
    field_sets = await _field_sets(connection)
    async for row in connection.cursor(_CHAINED, prefetch=1000):
        row = _groups_text(row, field_sets)
        chain, position = row["chain_id"], row["chain_seq"]
        where = f"chain {chain} position {position} (event id {row['id']})"
        if chain not in tails:
            return ChainReport(False, count, f"broken at {where}: no such chain")
        last, previous = tails[chain]
        if position != last + 1:
            return ChainReport(
                False, count, f"broken at chain {chain} position {last + 1}: event missing"
            )
        if bytes(row["prev_hash"]) != previous:
            return ChainReport(False, count, f"broken at {where}: does not follow position {last}")
        if event_hash(previous, row) != bytes(row["hash"]):
            return ChainReport(False, count, f"broken at {where}: contents were altered")
        tails[chain] = (position, bytes(row["hash"]))
        count += 1
    for chain, tail in sorted(tails.items()):
        if heads[chain] != tail:
            return ChainReport(
                False, count, f"broken after chain {chain} position {tail[0]}: events were removed"
            )
    return ChainReport(True, count, "")
