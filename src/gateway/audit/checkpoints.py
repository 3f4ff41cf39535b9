"""Where the last verification of each chain stopped (``data.audit_checkpoints``).

`gateway audit verify` starts each chain at its checkpoint and, when it finds the trail intact,
records where it ended, through ``data.record_audit_checkpoint`` (which refuses a position that
does not hold that hash): so the nightly run reads only the day's events. `--full` reads
everything, and records its checkpoints too. A checkpoint is trusted for what lies before it:
an event altered there is found by the next `--full`.
"""

from __future__ import annotations

import asyncpg

from gateway.audit.chain import Tails

__all__ = ["checkpoints", "record_checkpoints"]


async def checkpoints(connection: asyncpg.Connection) -> Tails:
    rows = await connection.fetch("select chain_id, chain_seq, hash from data.audit_checkpoints")
    return {row["chain_id"]: (row["chain_seq"], bytes(row["hash"])) for row in rows}


async def record_checkpoints(connection: asyncpg.Connection, tails: Tails) -> None:
    before = await checkpoints(connection)
    async with connection.transaction():
        for chain, (position, last) in sorted(tails.items()):
            if position > 0 and before.get(chain) != (position, last):
                await connection.execute(
                    "select data.record_audit_checkpoint($1, $2, $3)", chain, position, last
                )
