"""Accounts remembered between requests, and forgotten: a change of the accounts or partners
(migration 0015's notifications) ends every remembered account; while the gateway's listener is
down nothing is remembered; when it is back it starts afresh. Real PostgreSQL, real LISTEN."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from gateway.authn.accounts import Authenticator
from gateway.data import queries
from gateway.data.account_changes import LISTENER, AccountChanges
from gateway.errors import AuthenticationError
from tests.support.database import as_admin
from tests.support.executors import trusted

ISSUER = "https://cache.test"


async def _until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time allowed")
        await asyncio.sleep(0.01)


class _World:
    """An Authenticator over the test database as the gateway's role, with its listener, the
    statements it sent, and an admin connection to change accounts with."""

    def __init__(self, env, size: int = 100) -> None:
        self.env = env
        self.size = size
        self.statements: list[str] = []

    async def __aenter__(self) -> _World:
        self.pool = await asyncpg.create_pool(self.env.app_url, min_size=1, max_size=2)
        self.admin = await asyncpg.connect(self.env.admin_url)
        self.changes = AccountChanges(self.env.app_url)
        self.changes.start()
        await _until(lambda: self.changes.listening)

        async def fetch(statement: str, *args):
            self.statements.append(statement)
            return await self.pool.fetch(statement, *args)

        self.auth = Authenticator(None, fetch, self.changes, self.size)  # type: ignore[arg-type]
        self.subject = f"cache-{uuid.uuid4().hex[:8]}"
        before = self.changes.generation
        await self.admin.execute(
            "insert into data.accounts (issuer, subject, role) values ($1, $2, 'support')",
            ISSUER,
            self.subject,
        )
        await _until(lambda: self.changes.generation != before)  # the insert, heard
        return self

    async def __aexit__(self, *exc) -> None:
        await self.admin.execute(
            "delete from data.accounts where issuer = $1 and subject = $2", ISSUER, self.subject
        )
        await self.changes.close()
        await self.admin.close()
        await self.pool.close()

    async def account(self, subject: str | None = None):
        return await self.auth.account(
            issuer=ISSUER, subject=subject or self.subject, expires_at=time.time() + 60
        )

    def lookups(self) -> int:
        return self.statements.count(queries.ACCOUNT_FOR)


def test_an_account_is_read_once_then_remembered_until_a_change_says_otherwise(env):
    """Attack: an operator disables an account whose principal the gateway remembers. Expected:
    the next lookup after the change's notification refuses it ("Token invalid"), with one
    read of the table for the first request, none for the second, and one after the change."""

    async def scenario() -> None:
        async with _World(env) as world:
            assert (await world.account()).role.value == "support"
            assert (await world.account()).role.value == "support"
            assert world.lookups() == 1
            before = world.changes.generation
            await world.admin.execute(
                "update data.accounts set disabled_at = now() where issuer = $1 and subject = $2",
                ISSUER,
                world.subject,
            )
            await _until(lambda: world.changes.generation != before)
            with pytest.raises(AuthenticationError, match="Token invalid"):
                await world.account()
            assert world.lookups() == 2
            # A refusal is not remembered: enabled again, the account is read and served.
            await world.admin.execute(
                "update data.accounts set disabled_at = null where issuer = $1 and subject = $2",
                ISSUER,
                world.subject,
            )
            await _until(lambda: world.changes.generation != before + 1)
            assert (await world.account()).role.value == "support"

    asyncio.run(scenario())


def test_a_change_of_the_partners_forgets_every_remembered_account(env):
    """A partner disabled ends its accounts at their next request: any statement on
    data.partners (even one changing no row) notifies, and every remembered account is read
    again."""

    async def scenario() -> None:
        async with _World(env) as world:
            await world.account()
            await world.account()
            assert world.lookups() == 1
            before = world.changes.generation
            await world.admin.execute("update data.partners set name = name where false")
            await _until(lambda: world.changes.generation != before)
            await world.account()
            assert world.lookups() == 2

    asyncio.run(scenario())


def test_nothing_is_remembered_while_the_listener_is_down_and_it_starts_afresh(env):
    """Attack: the listener's connection is cut (a failover, a proxy), so a change would go
    unheard. Expected: while it is down every request reads the table; the account remembered
    before is not trusted after it is back (it reconnects by itself within a second or two)."""

    async def scenario() -> None:
        async with _World(env) as world:
            await world.account()
            await world.account()
            assert world.lookups() == 1
            await world.admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where application_name = $1",
                LISTENER,
            )
            await _until(lambda: not world.changes.listening)
            await world.account()
            await world.account()
            assert world.lookups() == 3  # read each time while nobody listens
            await _until(lambda: world.changes.listening)
            await world.account()  # what was remembered before is not trusted now
            assert world.lookups() == 4
            await world.account()
            assert world.lookups() == 4

    asyncio.run(scenario())


def test_the_least_recently_used_account_is_forgotten_first_and_zero_remembers_none(env):
    async def scenario() -> None:
        async with _World(env, size=1) as world:
            other = f"cache-{uuid.uuid4().hex[:8]}"
            before = world.changes.generation
            await world.admin.execute(
                "insert into data.accounts (issuer, subject, role) values ($1, $2, 'support')",
                ISSUER,
                other,
            )
            await _until(lambda: world.changes.generation != before)
            try:
                await world.account()
                await world.account(other)  # the first is forgotten (one remembered)
                await world.account()
                assert world.lookups() == 3
                off = Authenticator(None, world.auth._fetch, world.changes, 0)  # type: ignore[arg-type]
                for _ in range(2):
                    await off.account(issuer=ISSUER, subject=other, expires_at=time.time() + 60)
                assert world.lookups() == 5
            finally:
                await world.admin.execute(
                    "delete from data.accounts where issuer = $1 and subject = $2", ISSUER, other
                )

    asyncio.run(scenario())


def test_a_listener_that_cannot_hear_a_change_never_counts_as_listening(env):
    """Attack: a gateway whose listener would wait for notifications nobody sends (the triggers
    of migration 0015 missing or disabled; LISTEN through a pooler in transaction mode, which
    never delivers) would remember accounts for good. Expected: it does not count as listening
    (so nothing is remembered) until it hears, and it does once the triggers are back."""

    async def scenario() -> None:
        admin = await asyncpg.connect(env.admin_url)
        changes = AccountChanges(env.app_url)
        try:
            await admin.execute("alter table data.accounts disable trigger accounts_changed")
            changes.start()
            await asyncio.sleep(1.5)
            assert not changes.listening
            await admin.execute("alter table data.accounts enable trigger accounts_changed")
            await _until(lambda: changes.listening, seconds=5)
        finally:
            await admin.execute("alter table data.accounts enable trigger accounts_changed")
            await changes.close()
            await admin.close()

    asyncio.run(scenario())


WHO_AM_I = trusted("{ me { subject role } }")


def _statements(gateway) -> float:
    for line in gateway.http.get("/metrics").text.splitlines():
        if line.startswith("gateway_db_statements_total "):
            return float(line.split()[1])
    raise AssertionError("no statement counter")


def test_a_remembered_account_disabled_is_refused_at_its_next_request_on_each_executor(
    env, gateway
):
    """Attack: an operator disables an account a production gateway remembers; its token (still
    valid) is sent again, by hash to a compiled plan and as text to graphql-core. Expected: its
    second request reads no account (remembered: no statement at all for ``me``), and once the
    change is committed the next request is refused UNAUTHENTICATED (within two seconds, the
    notification's way)."""
    subject = f"cache-http-{uuid.uuid4().hex[:8]}"
    issuer = env.identity.issuer
    as_admin(
        env,
        lambda c: c.execute(
            "insert into data.accounts (issuer, subject, role) values ($1, $2, 'support')",
            issuer,
            subject,
        ),
    )
    token = env.token(subject)
    try:
        # The insert's own notification may arrive after the first request has read (and
        # remembered) the account, and then ends what it remembered: a request reads the account
        # again until that notification has been heard. Once heard, a request reads nothing.
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline, "the account was never remembered"
            before = _statements(gateway)
            response = gateway.post(WHO_AM_I, token)
            if response.status_code == 200 and _statements(gateway) == before:
                break  # remembered: the account was not read
            time.sleep(0.05)
        assert response.json()["data"]["me"]["subject"] == subject
        as_admin(
            env,
            lambda c: c.execute(
                "update data.accounts set disabled_at = now() where issuer = $1 and subject = $2",
                issuer,
                subject,
            ),
        )
        deadline = time.monotonic() + 2
        while (response := gateway.post(WHO_AM_I, token)).status_code == 200:
            assert time.monotonic() < deadline, "still served after the change was committed"
            time.sleep(0.01)
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        as_admin(
            env,
            lambda c: c.execute(
                "delete from data.accounts where issuer = $1 and subject = $2", issuer, subject
            ),
        )
