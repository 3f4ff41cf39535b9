"""Where verifications of each chain stopped (``data.audit_checkpoints``).

`gateway audit verify` starts each chain at its furthest checkpoint and, when it finds the trail
intact, records where it ended, through ``data.record_audit_checkpoint`` (which refuses a
position that does not hold that hash, or one behind the furthest): so the nightly run reads
only the day's events. Every checkpoint stays (a row each, who recorded it and when). A
checkpoint is trusted for what lies before it by the incremental verify; ``--full`` holds every
checkpoint against the event at its position, and archiving a month holds those in the month
(``Held``), so an event altered before a checkpoint is found, whether still in the database or
about to be archived.
"""

from __future__ import annotations

import asyncpg

from gateway.audit.chain import Held, Tails

__all__ = ["checkpoints", "furthest", "held_checkpoints", "record_checkpoints"]


async def checkpoints(connection: asyncpg.Connection) -> Tails:
    """Each chain's furthest checkpoint."""
    return furthest(await held_checkpoints(connection))


def furthest(held: Held) -> Tails:
    """Each chain's furthest checkpoint among ``held``."""
    tails: Tails = {}
    for (chain, position), (digest, _) in sorted(held.items()):
        tails[chain] = (position, digest)
    return tails


async def held_checkpoints(connection: asyncpg.Connection) -> Held:
    """Every checkpoint ever recorded: (chain, position) to (hash, "recorded <when> by <whom>")."""
    rows = await connection.fetch(
        "select chain_id, chain_seq, hash, verified_at, recorded_by from data.audit_checkpoints"
    )
    return {
        (row["chain_id"], row["chain_seq"]): (
            bytes(row["hash"]),
            f"recorded {row['verified_at']:%Y-%m-%d %H:%M:%S} UTC by {row['recorded_by']}",
        )
        for row in rows
    }


async def record_checkpoints(connection: asyncpg.Connection, tails: Tails) -> None:
    """Record where each chain's walk ended, but where a later verification (a nightly one
    during a long ``--full``) already went further."""
    async with connection.transaction():
        before = await checkpoints(connection)
        for chain, (position, last) in sorted(tails.items()):
            if position > 0 and before.get(chain, (0, b""))[0] < position:
                await connection.execute(
                    "select data.record_audit_checkpoint($1, $2, $3)", chain, position, last
                )
