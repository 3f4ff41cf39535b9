"""A LISTEN connection that says when an account or a partner may have changed.

It listens on the channel that sql/accounts.sql's triggers notify on every change of
``data.accounts`` or ``data.partners``.

``generation`` moves on every notification and whenever the connection opens or is lost, and
``listening`` is False while it is down: a cache keyed by it (``gateway.authn.accounts``) trusts
an entry only while the connection that would have told it of a change is up and nothing has
been said since the entry was read. The connection counts as listening only once it has shown
that it hears: both triggers exist (a gateway started before migration 0015 would otherwise
wait for notifications nobody sends) and a notification it sends itself comes back (LISTEN
through a pooler in transaction mode never delivers one). It is kept by a background task:
reopened a second after it is lost (a restart, a failover: it follows the URL to the primary),
and probed again every ``PING_SECONDS``, so a connection that died silently, or stopped
hearing, is noticed within ``PING_SECONDS + PROBE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import asyncpg

__all__ = ["CHANNEL", "LISTENER", "AccountChanges"]

CHANNEL = "gateway_accounts"
LISTENER = "gateway-accounts"  # the connection's application_name (pg_stat_activity)
PING_SECONDS = 5.0
PROBE_SECONDS = 2.0
RETRY_SECONDS = 1.0
PROBE = "probe:"  # the payload of a listener's own notifications (the triggers send table names)
TRIGGERS = """
select count(*) from pg_catalog.pg_trigger t
join pg_catalog.pg_class c on c.oid = t.tgrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'data' and not t.tgisinternal and t.tgenabled <> 'D'
  and (c.relname, t.tgname) in (('accounts', 'accounts_changed'), ('partners', 'partners_changed'))
"""

log = logging.getLogger("gateway.accounts")


class AccountChanges:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.generation = 0
        self.listening = False
        self._task: asyncio.Task[None] | None = None
        self._probe = ""
        self._heard = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name="account changes")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _changed(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        # A listener's own (this one's, or another replica's); asyncpg passes text.
        if isinstance(payload, str) and payload.startswith(PROBE):
            if payload == self._probe:
                self._heard.set()
            return
        self.generation += 1

    async def _hears(self, connection: asyncpg.Connection) -> None:
        """Send a notification of our own and wait for it; TimeoutError if it never comes."""
        self._probe = PROBE + secrets.token_hex(8)
        self._heard.clear()
        await connection.execute("select pg_notify($1, $2)", CHANNEL, self._probe)
        await asyncio.wait_for(self._heard.wait(), PROBE_SECONDS)

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
            if await connection.fetchval(TRIGGERS) != 2:
                raise LookupError("the accounts' change triggers are missing (sql/accounts.sql)")
            await self._hears(connection)
            # Whatever changed before LISTEN began was never heard: start afresh.
            self.generation += 1
            self.listening = True
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                if not lost.is_set():
                    await self._hears(connection)
        finally:
            self.listening = False
            self.generation += 1
            connection.terminate()
