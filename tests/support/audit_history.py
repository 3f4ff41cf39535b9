"""Months of audit trail made quickly: real events, copied into earlier months with their chains
made anew.

The gateway writes an event with ``now()`` as its time (the chain trigger sets it), so a trail
that spans months cannot be written through it in a test. ``append_history`` takes events the
gateway wrote (its templates: every column as stored), and appends copies of them, each with its
own id, seq, request id, patient and a time in the month it is given, continuing the chains
(each copy's hash computed as the chain trigger computes it, ``gateway.audit.chain.event_hash``)
and advancing the chains' head rows, with the triggers off for that transaction only
(``session_replication_role = replica``, as a superuser). `gateway audit verify` then finds the
whole trail intact: a copy is an event like any other.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from gateway.audit.chain import _field_sets, _groups_text, event_hash

__all__ = ["append_history", "month_start", "rewrite_chain"]

_COLUMNS = (
    "request_id, kind, issuer, subject, role, actor_id, patient_id, client_id, "
    "break_glass_reason, objects, detail, object_groups, object_sets, object_counts, object_ids"
)


@contextlib.asynccontextmanager
async def triggers_off(connection: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction in which the trail's triggers are off, as a superuser can switch them off
    (``session_replication_role = replica``): how the attacks of the tests are made."""
    async with connection.transaction():
        await connection.execute("set local session_replication_role = replica")
        yield


def month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


async def append_history(
    connection: asyncpg.Connection,
    templates: Sequence[Any],
    months: Sequence[datetime],
    per_month: int,
    patients: Sequence[UUID],
    *,
    seed: int = 26,
    batch: int = 5000,
) -> int:
    """Append ``per_month`` copies of ``templates`` (rows of data.access_events, with
    ``objects``, ``detail`` and ``object_groups`` as text) to each of ``months`` (in order), each
    for one of ``patients``; return how many were written. The months' partitions must exist."""
    chance = random.Random(seed)
    field_sets = await _field_sets(connection)
    written = 0
    async with triggers_off(connection):
        heads = {
            row["id"]: (row["last_seq"], bytes(row["last_hash"]))
            for row in await connection.fetch(
                "select id, last_seq, last_hash from data.audit_chains for update"
            )
        }
        chains = sorted(heads)
        for start in months:
            end = (start + timedelta(days=32)).replace(day=1)
            span = (end - start).total_seconds()
            times = sorted(
                start + timedelta(seconds=chance.random() * span) for _ in range(per_month)
            )
            seqs = [
                row[0]
                for row in await connection.fetch(
                    "select nextval('data.access_event_seq') from generate_series(1, $1)",
                    per_month,
                )
            ]
            rows = []
            for when, seq in zip(times, seqs, strict=True):
                template = chance.choice(templates)
                chain = chance.choice(chains)
                position, previous = heads[chain]
                row = {
                    **dict(template),
                    "request_id": f"history-{written}",
                    "patient_id": chance.choice(patients)
                    if template["patient_id"] is not None
                    else None,
                    "occurred_at": when,
                    "chain_id": chain,
                    "chain_seq": position + 1,
                    "seq": seq,
                    "prev_hash": previous,
                }
                row["hash"] = event_hash(previous, _groups_text(row, field_sets))
                heads[chain] = (position + 1, row["hash"])
                rows.append(row)
                written += 1
                if len(rows) >= batch:
                    await _insert(connection, rows)
                    rows = []
            await _insert(connection, rows)
        for chain, (position, last) in heads.items():
            await connection.execute(
                "update data.audit_chains set last_seq = $2, last_hash = $3 where id = $1",
                chain,
                position,
                last,
            )
    return written


async def _insert(connection: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = [
        "occurred_at", "seq", "chain_id", "chain_seq", "prev_hash", "hash",
        *(name.strip() for name in _COLUMNS.split(",")),
    ]  # fmt: skip
    await connection.executemany(
        f"insert into data.access_events ({', '.join(columns)}) values "
        f"({', '.join(f'${i}' + _cast(name) for i, name in enumerate(columns, start=1))})",
        [tuple(row[name] for name in columns) for row in rows],
    )


def _cast(name: str) -> str:
    return "::jsonb" if name in ("objects", "detail", "object_groups") else ""


async def rewrite_chain(
    connection: asyncpg.Connection, chain: int, position: int, subject: str
) -> None:
    """As a superuser who can switch the triggers off: change the subject of the event at
    ``position`` of ``chain``, recompute the hashes of it and every later event of the chain
    (across months) and the chain's head row, so that the chain is whole again from its start:
    the rewrite a checkpoint is there to find."""
    field_sets = await _field_sets(connection)
    async with triggers_off(connection):
        rows = await connection.fetch(
            "select id, occurred_at, seq, chain_id, chain_seq, request_id, kind, issuer, "
            "subject, role, actor_id, patient_id, client_id, break_glass_reason, "
            "objects::text as objects, detail::text as detail, "
            "object_groups::text as object_groups, object_sets, object_counts, object_ids, "
            "prev_hash from data.access_events where chain_id = $1 and chain_seq >= $2 "
            "order by chain_seq",
            chain,
            position,
        )
        previous = bytes(rows[0]["prev_hash"])
        for row in rows:
            event = dict(row)
            if row["chain_seq"] == position:
                event["subject"] = subject
            digest = event_hash(previous, _groups_text(event, field_sets))
            await connection.execute(
                "update data.access_events set subject = $2, prev_hash = $3, hash = $4 "
                "where id = $1 and occurred_at = $5",
                row["id"],
                event["subject"],
                previous,
                digest,
                row["occurred_at"],
            )
            previous = digest
        await connection.execute(
            "update data.audit_chains set last_hash = $2 where id = $1", chain, previous
        )
