"""Failover under load, with real parts on one machine: a PostgreSQL primary and a streaming
standby, PgBouncer in transaction mode in front, two ``gateway serve`` processes, and patients, a
partner and a clinician calling them while the primary is killed (``kill -9``), the standby
promoted (``pg_ctl promote``) and PgBouncer moved to it (``RELOAD``).

Just before the kill, the standby's link to the primary is held (a relay, ``WalLink``, stops
passing on what the primary sends, as a slow or partitioned network would) for ``hold`` seconds
while the load goes on; the kill then drops what was held. With synchronous replication no commit
returns while the link is held, so no request can get a 200 for events the standby lacks. With
asynchronous replication the primary acknowledges them anyway, and they are gone after the
failover: ``python -m tests.support.failover --replication async`` shows that loss, which is what
proves the checks of tests/test_failover.py able to fail.

Every process started here is stopped in a ``finally`` (clusters with ``pg_ctl stop -m
immediate``, PgBouncer and the gateways by their process group or pid), also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import httpx

from tests.conftest import Environment
from tests.support.gateway_process import gateway_serve, run_gateway
from tests.support.load import KINDS, Load, Outcome, Timeline, prepared_database, recorded_events
from tests.support.postgres_servers import (
    PG_BIN,
    Bouncer,
    Cluster,
    WalLink,
    owned_by_postgres,
    run_as_postgres,
)
from tests.support.subscriber import Subscriber

ISSUER = "https://idp.failover.test"
STANDBY_NAME = "standby"
NO_RESPONSE = "no response"


async def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)


def _every_kind_answered(load: Load, after: float, count: int) -> bool:
    return all(load.answered(kind, after) >= count for kind in KINDS) and all(
        load.answered(None, after, gateway) >= count for gateway in range(len(load.gateways))
    )


# --- the scenario ------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    replication: str
    outcomes: list[Outcome]
    timeline: Timeline
    missing: list[Outcome]  # answered 200 but their audit events are not on the new primary
    verify: subprocess.CompletedProcess
    gateways_restarted: bool
    seconds: float
    live: Live

    def of_status(self, status: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def acknowledged_during_hold(self) -> list[Outcome]:
        """200s to requests that started after the link was held and ended before the kill:
        every request writes an audit event, so each of these is a commit the standby never
        confirmed."""
        t = self.timeline
        return [o for o in self.of_status(200) if t.held < o.started and o.ended < t.killed]

    @property
    def problems(self) -> list[Outcome]:
        """Responses that failed a check: a status other than 200 or a clean 503, a 503 without
        Retry-After or in other words than the gateway's, no response at all, a row of someone
        else."""
        return [o for o in self.outcomes if o.problem or o.status not in (200, 503)]

    @property
    def outage(self) -> tuple[float, float]:
        """(first failing request's start, first 200 that started after the promotion ended)."""
        failing = [o.started for o in self.outcomes if o.status != 200]
        back = [o.ended for o in self.of_status(200) if o.started > self.timeline.promoted]
        return (min(failing, default=0.0), min(back, default=0.0))

    def summary(self) -> str:
        first_failure, first_back = self.outage
        statuses: dict[int, int] = {}
        for outcome in self.outcomes:
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        t = self.timeline
        lines = [
            f"replication {self.replication}: {len(self.outcomes)} requests "
            f"({', '.join(f'{n} x {s or NO_RESPONSE}' for s, n in sorted(statuses.items()))})"
            f" in {self.seconds:.1f} s",
            f"  link held {t.killed - t.held:.2f} s; primary killed; standby promoted "
            f"{t.promoted - t.killed:.2f} s later; PgBouncer moved {t.moved - t.killed:.2f} s "
            "after the kill",
            f"  outage window {first_back - first_failure:.2f} s (first failing request to the "
            f"first 200 after the promotion; that 200 came {first_back - t.killed:.2f} s after the "
            f"kill, {first_back - t.moved:.2f} s after PgBouncer was moved)",
            f"  {len(self.of_status(503))} x 503 with Retry-After; "
            f"{len(self.acknowledged_during_hold)} x 200 to requests made while the link was held",
            f"  responses that failed a check: {len(self.problems)}"
            + "".join(f"\n    {o.kind} {o.status}: {o.problem}" for o in self.problems[:10]),
            f"  200s whose audit events are missing on the new primary: {len(self.missing)}"
            + "".join(
                f"\n    {o.kind} {o.subject} request {o.request_id}: expected {sorted(o.events)}"
                for o in self.missing[:10]
            ),
            f"  gateway audit verify on the new primary: exit {self.verify.returncode} "
            f"{(self.verify.stdout or self.verify.stderr).strip()[:200]}",
            f"  gateways restarted: {self.gateways_restarted}",
            f"  subscriptions: ended with {self.live.interrupted} (complete: "
            f"{self.live.completed}); /readyz after: {self.live.ready}; new subscriptions "
            f"received {self.live.resumed}",
        ]
        return "\n".join(lines)


async def _set_role_timeout(env: Environment, database: str, value: str) -> str:
    """Set ``statement_timeout`` on the application role; return what its sessions show."""
    connection = await asyncpg.connect(env.admin_url)
    try:
        statement = await connection.fetchval(
            "select format('alter role gateway_app in database %I set statement_timeout = %L', "
            "$1::text, $2::text)",
            database,
            value,
        )
        await connection.execute(statement)
    finally:
        await connection.close()
    connection = await asyncpg.connect(env.app_url)
    try:
        return await connection.fetchval("show statement_timeout")
    finally:
        await connection.close()


async def _replicating(primary: Cluster, state: str) -> None:
    deadline = time.monotonic() + 30
    connection = await asyncpg.connect(primary.url())
    try:
        while True:
            found = await connection.fetchval(
                "select sync_state from pg_stat_replication where application_name = $1 "
                "and state = 'streaming'",
                STANDBY_NAME,
            )
            if found == state:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"standby not replicating as {state} ({found})")
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def _configure_replication(primary: Cluster, replication: str) -> None:
    if replication == "sync":
        connection = await asyncpg.connect(primary.url())
        try:
            await connection.execute(
                f"alter system set synchronous_standby_names = '{STANDBY_NAME}'"
            )
            await connection.execute("alter system set synchronous_commit = 'on'")
            await connection.execute("select pg_reload_conf()")
        finally:
            await connection.close()
    await _replicating(primary, "sync" if replication == "sync" else "async")


SUBSCRIPTION = (
    "subscription($id: ID!) { consultationEvents(consultationId: $id) { kind "
    "consultation { id } } }"
)


@dataclasses.dataclass
class Live:
    """A subscriber on each gateway, across the failover: how its subscription ended, what
    /readyz said after, and the kinds a new subscription received then."""

    interrupted: list[list[str]] = dataclasses.field(default_factory=list)  # error codes
    completed: list[bool] = dataclasses.field(default_factory=list)
    ready: list[dict] = dataclasses.field(default_factory=list)
    resumed: list[list[str]] = dataclasses.field(default_factory=list)  # event kinds


async def _subscribe(load: Load) -> tuple[list[Subscriber], UUID]:
    subject, patient = load.env.patients()[0]
    consultation = sorted(load.env.truth.consultations_of_patient[patient])[0]
    subscribers = []
    for url in load.gateways:
        subscriber = await Subscriber.connect(url, load.env.token(subject))
        await subscriber.subscribe("before", SUBSCRIPTION, consultation)
        assert (await subscriber.event("before"))["kind"] == "current"
        subscribers.append(subscriber)
    return subscribers, consultation


async def _interrupted(subscribers: list[Subscriber], live: Live) -> None:
    """Each subscription, once its gateway's LISTEN connection is gone with the primary."""
    for subscriber in subscribers:
        message = await subscriber.next("before", wait=30)
        errors = (message.get("payload") or {}).get("errors") or [{}]
        live.interrupted.append([e.get("extensions", {}).get("code") for e in errors])
        live.completed.append(await subscriber.next("before", wait=30) == {
            "id": "before", "type": "complete"
        })  # fmt: skip


async def _resumed(
    http: httpx.AsyncClient, load: Load, subscribers: list[Subscriber], consultation: UUID,
    new_primary: str, live: Live,
) -> None:  # fmt: skip
    """/readyz on each gateway (it reopens the LISTEN connection, on the new primary), then a
    new subscription on each, and an update made on the new primary reaching both."""
    for url in load.gateways:
        deadline = time.monotonic() + 20
        while (response := await http.get(f"{url}/readyz")).status_code != 200:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        live.ready.append(response.json())
    for subscriber in subscribers:
        await subscriber.subscribe("after", SUBSCRIPTION, consultation)
    kinds = [[(await subscriber.event("after"))["kind"]] for subscriber in subscribers]
    connection = await asyncpg.connect(new_primary)
    try:
        await connection.execute(
            "update data.consultations set status = status where id = $1", consultation
        )
    finally:
        await connection.close()
    for subscriber, seen in zip(subscribers, kinds, strict=True):
        seen.append((await subscriber.event("after"))["kind"])
    live.resumed = kinds


async def _load_through_failover(
    load: Load, primary: Cluster, standby: Cluster, link: WalLink, bouncer: Bouncer, hold: float,
    new_primary: str, live: Live,
) -> None:  # fmt: skip
    async with httpx.AsyncClient(timeout=30) as http:
        tasks = await load.run(http)
        subscribers: list[Subscriber] = []
        try:
            await _until(lambda: _every_kind_answered(load, 0, 3), 30, "answers before the fault")
            subscribers, consultation = await _subscribe(load)
            timeline = load.timeline
            timeline.held = time.monotonic()
            link.hold()
            await asyncio.sleep(hold)
            timeline.killed = time.monotonic()
            await asyncio.to_thread(primary.kill)
            link.cut()
            await asyncio.to_thread(standby.promote)
            timeline.promoted = time.monotonic()
            await asyncio.to_thread(bouncer.move_to, standby.port)
            timeline.moved = time.monotonic()
            await _interrupted(subscribers, live)
            await _until(
                lambda: _every_kind_answered(load, timeline.moved, 3),
                40,
                "answers of every kind, from both gateways, after the failover",
            )
            await _resumed(http, load, subscribers, consultation, new_primary, live)
        finally:
            load.stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for subscriber in subscribers:
                with contextlib.suppress(Exception):
                    await subscriber.close()


def run_scenario(replication: str, hold: float = 2.0, role_timeout: str = "") -> Report:
    """Build everything, fail over under load, check the new primary, tear everything down.
    ``role_timeout``: a ``statement_timeout`` set on the application role, as docs/OPERATIONS.md
    advises behind PgBouncer."""
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="gateway-failover-"))
    root.chmod(0o755)
    primary = Cluster(owned_by_postgres(root / "primary"))
    standby = Cluster(owned_by_postgres(root / "standby"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(primary.stop)
        primary.initdb()
        primary.start()
        env, database = prepared_database(primary, root, ISSUER)
        if role_timeout:
            shown = asyncio.run(_set_role_timeout(env, database, role_timeout))
            print(f"statement_timeout of the application role: {shown}")

        # The standby: a base backup, streaming through the link under its own name.
        source = f"host=127.0.0.1 port={primary.port} user=postgres"
        basebackup = [str(PG_BIN / "pg_basebackup"), "-D", str(standby.data), "-R", "-c", "fast"]
        run_as_postgres([*basebackup, "-X", "stream", "-d", source])
        link = WalLink(primary.port)
        stack.callback(link.cut)
        with (standby.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f"primary_conninfo = 'host=127.0.0.1 port={link.port} user=postgres "
                f"application_name={STANDBY_NAME}'\n"
            )
        stack.callback(standby.stop)
        standby.start()
        asyncio.run(_configure_replication(primary, replication))

        bouncer = Bouncer(root / "pgbouncer", database, primary.port)
        stack.callback(bouncer.stop)
        app = urlsplit(env.app_url)
        through_bouncer = env.app_url.replace(f":{primary.port}/", f":{bouncer.port}/")
        listen = (
            f"postgresql://{app.username}:{app.password}@127.0.0.1:{primary.port},"
            f"127.0.0.1:{standby.port}/{database}?target_session_attrs=read-write"
        )
        variables = {
            "DATABASE_URL": through_bouncer,
            "GATEWAY_LISTEN_DATABASE_URL": listen,
            "GATEWAY_DB_STATEMENT_TIMEOUT_MS": "0",
            "GATEWAY_DB_STATEMENT_CACHE_SIZE": "0",
            "GATEWAY_REQUEST_TIMEOUT_SECONDS": "4",
            "GATEWAY_RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
            "GATEWAY_RATE_LIMIT_FIELD_CALLS_PER_MINUTE": "1000000",
        }
        gateways = [stack.enter_context(gateway_serve(env, **variables)) for _ in range(2)]
        pids = [process.pid for process, _ in gateways]

        load = Load(env, [url for _, url in gateways])
        new_primary = standby.url(database)
        live = Live()
        asyncio.run(
            _load_through_failover(load, primary, standby, link, bouncer, hold, new_primary, live)
        )
        restarted = any(process.poll() is not None for process, _ in gateways) or pids != [
            process.pid for process, _ in gateways
        ]

        answered = [o for o in load.outcomes if o.status == 200]
        recorded = asyncio.run(recorded_events(new_primary, [o.request_id for o in answered]))
        missing = [o for o in answered if not o.events <= recorded.get(o.request_id, set())]
        verify = run_gateway("audit", "verify", "--full", "--database-url", new_primary, timeout=60)
        return Report(
            replication,
            load.outcomes,
            load.timeline,
            missing,
            verify,
            restarted,
            time.monotonic() - began,
            live,
        )
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.failover",
        description="Fail a PostgreSQL primary over under load and report what was acknowledged "
        "and what the new primary holds.",
    )
    parser.add_argument("--replication", choices=("sync", "async"), default="async")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds the link is held")
    parser.add_argument(
        "--role-statement-timeout",
        default="",
        metavar="TIMEOUT",
        help="set statement_timeout on the application role (e.g. 500ms)",
    )
    arguments = parser.parse_args(argv)
    report = run_scenario(arguments.replication, arguments.hold, arguments.role_statement_timeout)
    print(report.summary())


if __name__ == "__main__":
    main()
