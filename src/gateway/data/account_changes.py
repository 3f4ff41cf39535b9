"""When may an account have changed? A LISTEN connection on the channel that migration 0015's
triggers notify on every change of ``data.accounts`` or ``data.partners``.

``generation`` moves on every notification and whenever the connection opens or is lost, and
``listening`` is False while it is down: a cache keyed by it (``gateway.authn.accounts``) trusts
an entry only while the connection that would have told it of a change is up and nothing has
been said since the entry was read. The connection is kept by a background task: reopened a
second after it is lost (a restart, a failover: it follows the URL to the primary), and
checked every ``PING_SECONDS`` with a query, so a connection that died silently is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

__all__ = ["CHANNEL", "LISTENER", "AccountChanges"]

CHANNEL = "gateway_accounts"
LISTENER = "gateway-accounts"  # the connection's application_name (pg_stat_activity)
PING_SECONDS = 10.0
RETRY_SECONDS = 1.0

log = logging.getLogger("gateway.accounts")


class AccountChanges:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.generation = 0
        self.listening = False
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name="account changes")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _changed(self, *_: Any) -> None:
        self.generation += 1

    async def _keep(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: nothing is trusted until it is back
                log.warning("account change listener down: %s", type(exc).__name__)
            await asyncio.sleep(RETRY_SECONDS)

    async def _listen(self) -> None:
        lost = asyncio.Event()
        connection = await asyncpg.connect(
            self._dsn, timeout=5, server_settings={"application_name": LISTENER}
        )
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(CHANNEL, self._changed)
            # Whatever changed before LISTEN began was never heard: start afresh.
            self.generation += 1
            self.listening = True
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                if not lost.is_set():
                    await connection.fetchval("select 1", timeout=PING_SECONDS / 2)
        finally:
            self.listening = False
            self.generation += 1
            connection.terminate()
