"""Verifying the audit trail's hash chain, independently of the database's own functions.

Each event's hash is SHA-256 over its predecessor's hash and its canonical text: every field as
"<length>:<text>" (or "N" for null), concatenated; times in UTC to the microsecond, JSON as
PostgreSQL prints jsonb. No separator or null can be confused with content. The chain
head row holds the last sequence number and hash, so removing events at the end is caught too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC

import asyncpg

__all__ = ["GENESIS", "ChainReport", "event_hash", "verify_chain"]

GENESIS = hashlib.sha256(b"consultation-gateway audit").digest()

_ROWS = """
select id, seq, occurred_at, request_id, kind, issuer, subject, role, actor_id, patient_id,
       client_id, break_glass_reason, objects, detail, prev_hash, hash
from data.access_events where seq is not null order by seq
"""


@dataclass(frozen=True, slots=True)
class ChainReport:
    intact: bool
    events: int
    message: str


def _field(value: object) -> str:
    if value is None:
        return "N"
    text = str(value)
    return f"{len(text)}:{text}"


def event_hash(prev: bytes, row: asyncpg.Record) -> bytes:
    occurred = row["occurred_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    canonical = "".join(
        _field(value)
        for value in (
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
    return hashlib.sha256(prev + canonical.encode()).digest()


async def verify_chain(connection: asyncpg.Connection) -> ChainReport:
    """Walk the chain in order; report the first broken link."""
    previous, expected_seq, count = GENESIS, 1, 0
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        head = await connection.fetchrow(
            "select last_seq, last_hash from data.audit_chain_head where id = 1"
        )
        async for row in connection.cursor(_ROWS, prefetch=1000):
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
    return ChainReport(True, count, f"audit chain intact: {count} events")
