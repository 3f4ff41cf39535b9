"""Faults of PostgreSQL and of the process, each caused for real and its outcome asserted exactly.

These tests own a PostgreSQL cluster of their own (never the suite's shared one), which they stop,
start, lock and put behind PgBouncer. The gateway is served over real HTTP, in-process or as the
real ``gateway serve`` in a subprocess sent a real SIGTERM. Waits are loop deadlines, never
timing assertions; "still held" and "still running" are checked against the database and the
process, not the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
import websockets

from gateway import create_app
from gateway.audit.events import expand_objects
from gateway.data.pool import Database
from gateway.dev.embedded import EmbeddedPostgres
from gateway.errors import ConfigurationError
from gateway.ids import decode_global_id, encode_global_id
from tests.conftest import Environment, _prepare
from tests.support.gateway_process import gateway_serve
from tests.support.production import production_identity
from tests.support.server import serving

ISSUER = "https://idp.faults.test"
LIST = "{ consultations(first: 100) { edges { node { id reason patient { id } } } } }"
SUBSCRIBE = (
    "subscription($id: ID!) { consultationEvents(consultationId: $id) { kind "
    "consultation { id status } } }"
)
# The only bodies a 503 may carry: the gateway's own words, nothing from below.
UNAVAILABLE_ERRORS = {
    ("Service temporarily unavailable", "UNAVAILABLE"),
    ("Response withheld: the audit trail could not be written", "AUDIT_UNAVAILABLE"),
    ("Server shutting down", "UNAVAILABLE"),
}
GATEWAY_BACKENDS = "application_name = 'consultation-gateway'"


# --- the test's own PostgreSQL -----------------------------------------------------------------


@dataclasses.dataclass
class OwnPostgres:
    """A cluster these tests may stop and start again on the same port."""

    cluster: EmbeddedPostgres
    env: Environment
    port: int

    def _pg_ctl(self, *args: str) -> None:
        command = ["pg_ctl", "-D", str(self.cluster.data), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def stop(self) -> None:
        """Fast shutdown: sessions are terminated, statements in flight are aborted."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("-l", str(self.cluster.log), "-o", options, "-w", "start")


@pytest.fixture(scope="module")
def own_pg() -> Iterator[OwnPostgres]:
    directory = Path(tempfile.mkdtemp(prefix="gateway-faults-pg-"))
    cluster = EmbeddedPostgres(directory, fast=True)
    url = cluster.start()
    try:
        identity = production_identity(directory / "identity", ISSUER)
        media = directory / "media"
        media.mkdir()
        env = asyncio.run(_prepare(url, identity, media))
        yield OwnPostgres(cluster, env, int(url.rsplit(":", 1)[1].split("/")[0]))
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


# --- helpers -------------------------------------------------------------------------------------


async def until(condition: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)


def assert_unavailable(response: httpx.Response) -> None:
    """A clean 503: Retry-After in whole seconds and one error in the gateway's own words."""
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit(), response.headers
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert list(error) == ["message", "extensions"] and list(error["extensions"]) == ["code"]
    assert (error["message"], error["extensions"]["code"]) in UNAVAILABLE_ERRORS, error


def consultation_ids(body: dict[str, Any]) -> set[UUID]:
    return {
        decode_global_id(edge["node"]["id"])[1] for edge in body["data"]["consultations"]["edges"]
    }


def assert_own_consultations(response: httpx.Response, env: Environment, patient: UUID) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    assert consultation_ids(body) == env.truth.consultations_of_patient[patient]
    owners = {edge["node"]["patient"]["id"] for edge in body["data"]["consultations"]["edges"]}
    assert owners == {encode_global_id("Patient", patient)}


def post(client: httpx.Client | httpx.AsyncClient, token: str, request_id: str = "") -> Any:
    headers = {"authorization": f"Bearer {token}"}
    if request_id:
        headers["x-request-id"] = request_id
    return client.post("/graphql", json={"query": LIST}, headers=headers)


@contextlib.asynccontextmanager
async def table_locked(env: Environment, table: str = "data.consultations") -> AsyncIterator[Any]:
    """An admin transaction holding ACCESS EXCLUSIVE on ``table``: every gateway statement that
    reads it waits. Yields the admin connection, which can still look at the server."""
    connection = await asyncpg.connect(env.admin_url)
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(f"lock table {table} in access exclusive mode")
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


async def still_locked(admin: Any, table: str = "data.consultations") -> bool:
    return bool(
        await admin.fetchval(
            "select count(*) from pg_locks where locktype = 'relation' and granted "
            "and relation = $1::regclass and mode = 'AccessExclusiveLock' "
            "and pid = pg_backend_pid()",
            table,
        )
    )


async def wait_for_blocked_statements(admin: Any, count: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        blocked = await admin.fetchval(
            f"select count(*) from pg_stat_activity where {GATEWAY_BACKENDS} "
            "and wait_event_type = 'Lock'"
        )
        if blocked >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{blocked} gateway statements waiting on the lock, not {count}")
        await asyncio.sleep(0.05)


# --- 1. PostgreSQL restarted under load ------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    request_id: str
    patient: UUID
    started: float
    ended: float
    response: httpx.Response | None
    failure: str = ""


@dataclasses.dataclass
class RestartRun:
    outcomes: list[Outcome]
    readiness: list[tuple[float, int]]
    stopping: float
    down: float
    up: float


async def _restart_under_load(
    url: str, callers: list[tuple[UUID, str]], own_pg: OwnPostgres
) -> RestartRun:
    outcomes: list[Outcome] = []
    readiness: list[tuple[float, int]] = []
    done = asyncio.Event()

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def caller(patient: UUID, token: str) -> None:
            while not done.is_set():
                request_id = uuid.uuid4().hex
                started = time.monotonic()
                try:
                    response = await post(http, token, request_id)
                    outcome = Outcome(request_id, patient, started, time.monotonic(), response)
                except httpx.HTTPError as exc:
                    outcome = Outcome(
                        request_id, patient, started, time.monotonic(), None, repr(exc)
                    )
                outcomes.append(outcome)
                await asyncio.sleep(0.01)

        async def probe() -> None:
            while not done.is_set():
                response = await http.get("/readyz")
                readiness.append((time.monotonic(), response.status_code))
                await asyncio.sleep(0.1)

        def count(status: int, after: float) -> int:
            return sum(
                1
                for o in outcomes
                if o.started > after and o.response is not None and o.response.status_code == status
            )

        def ready(status: int, after: float) -> bool:
            return any(at > after and code == status for at, code in readiness)

        tasks = [asyncio.create_task(caller(p, t)) for p, t in callers]
        tasks.append(asyncio.create_task(probe()))
        try:
            await until(lambda: count(200, 0) >= 30, 60, "30 answers before the fault")
            stopping = time.monotonic()
            await asyncio.to_thread(own_pg.stop)
            down = time.monotonic()
            await until(
                lambda: count(503, down) >= 20 and ready(503, down),
                30,
                "20 refusals and a 503 from /readyz while PostgreSQL is down",
            )
            await asyncio.to_thread(own_pg.start)
            up = time.monotonic()
            await until(
                lambda: count(200, up) >= 60 and ready(200, up),
                60,
                "60 answers and a 200 from /readyz once PostgreSQL is back",
            )
        finally:
            done.set()
            await asyncio.gather(*tasks)
    return RestartRun(outcomes, readiness, stopping, down, up)


async def _disclosure_events(env: Environment, request_ids: list[str]) -> dict[str, list[Any]]:
    connection = await asyncpg.connect(env.admin_url)
    try:
        rows = await connection.fetch(
            "select request_id, patient_id, data.event_objects(access_events) as objects "
            "from data.access_events "
            "where kind = 'disclosure' and request_id = any($1::text[])",
            request_ids,
        )
    finally:
        await connection.close()
    events: dict[str, list[Any]] = {}
    for row in rows:
        events.setdefault(row["request_id"], []).append(row)
    return events


def test_postgresql_restarted_under_load_gives_clean_503s_then_recovers_in_the_same_process(
    own_pg,
):
    env = own_pg.env
    settings = env.settings(
        db_pool_max_size=4, db_acquire_timeout_seconds=2, db_statement_timeout_ms=5000
    )
    callers = [(patient, env.token(subject)) for subject, patient in env.patients()[:6]]
    with serving(create_app(settings)) as server:
        run = asyncio.run(_restart_under_load(server.url, callers, own_pg))

    failures = [o.failure for o in run.outcomes if o.response is None]
    assert failures == [], failures[:3]
    statuses = [o.response.status_code for o in run.outcomes if o.response is not None]
    assert set(statuses) == {200, 503}, sorted(set(statuses))
    answered = [o for o in run.outcomes if o.response.status_code == 200]
    refused = [o for o in run.outcomes if o.response.status_code == 503]
    for outcome in refused:
        assert_unavailable(outcome.response)
    for outcome in answered:
        assert_own_consultations(outcome.response, env, outcome.patient)

    # Requests in flight when PostgreSQL went down were refused cleanly too (checked above).
    straddling = [o for o in run.outcomes if o.started < run.stopping < o.ended]
    # Once one request after the restart succeeded, no later one failed: no dead connection
    # stayed in the pool to poison a request.
    first_back = min((o for o in answered if o.started > run.up), key=lambda o: o.ended)
    after = [o for o in run.outcomes if o.started > first_back.ended]
    assert after and all(o.response.status_code == 200 for o in after)
    # /readyz followed the database: 503 while down, 200 again after.
    assert any(run.down < at < run.up and code == 503 for at, code in run.readiness)
    assert run.readiness[-1][1] == 200

    # Fail closed: every response that carried data has its disclosure event, naming the same
    # patient and exactly the consultations sent.
    events = asyncio.run(_disclosure_events(env, [o.request_id for o in answered]))
    for outcome in answered:
        recorded = events.get(outcome.request_id, [])
        assert [row["patient_id"] for row in recorded] == [outcome.patient], outcome.request_id
        objects = expand_objects(json.loads(recorded[0]["objects"]))
        sent = consultation_ids(outcome.response.json())
        assert {UUID(o["id"]) for o in objects if o["type"] == "Consultation"} == sent

    codes = sorted(o.response.json()["errors"][0]["extensions"]["code"] for o in refused)
    print(
        f"\nrestart under load: {len(answered)} x 200, {len(refused)} x 503 "
        f"({', '.join(f'{codes.count(c)} {c}' for c in sorted(set(codes)))}) "
        f"({sum(1 for o in refused if o.started < run.up)} while down or stopping), "
        f"{len(straddling)} in flight at the stop "
        f"({sorted({o.response.status_code for o in straddling})}); "
        f"PostgreSQL down {run.up - run.down:.2f} s; first 200 "
        f"{first_back.ended - run.up:.2f} s after it was back; {len(after)} requests after it"
    )


def test_subscriptions_end_with_unavailable_when_postgresql_restarts_and_work_again_after(
    own_pg,
):
    env = own_pg.env
    subject, patient = env.patients()[6]
    consultation = sorted(env.truth.consultations_of_patient[patient])[0]
    token = env.token(subject)

    def subscribe(key: str) -> str:
        variables = {"id": encode_global_id("Consultation", consultation)}
        return json.dumps(
            {
                "id": key,
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": variables},
            }
        )

    async def receive(ws: Any) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(ws.recv(), 30))

    async def scenario(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        ws = await websockets.connect(
            url.replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"]
        )
        try:
            await ws.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
                )
            )
            assert (await receive(ws))["type"] == "connection_ack"
            await ws.send(subscribe("1"))
            assert (await receive(ws))["payload"]["data"]["consultationEvents"]["kind"] == "current"
            await asyncio.to_thread(own_pg.stop)
            interrupted = [await receive(ws)]
            while interrupted[-1]["type"] not in ("complete", "error"):
                interrupted.append(await receive(ws))
            await asyncio.to_thread(own_pg.start)
            async with httpx.AsyncClient(base_url=url) as http:
                await until_ready(http)
            # The same WebSocket subscribes again; the hub opens a new LISTEN connection.
            await ws.send(subscribe("2"))
            resumed = [await receive(ws)]
            admin = await asyncpg.connect(env.admin_url)
            try:
                await admin.execute(
                    "update data.consultations set status = 'CANCELLED' where id = $1",
                    consultation,
                )
            finally:
                await admin.close()
            resumed.append(await receive(ws))
            async with httpx.AsyncClient(base_url=url) as http:
                health = (await http.get("/healthz")).status_code
            return interrupted, resumed, health
        finally:
            await ws.close()

    async def until_ready(http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 30
        while (await http.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "/readyz did not recover"
            await asyncio.sleep(0.1)

    with serving(create_app(env.settings())) as server:
        interrupted, resumed, health = asyncio.run(scenario(server.url))

    assert interrupted[0]["type"] == "next" and interrupted[0]["id"] == "1"
    assert interrupted[0]["payload"]["data"] is None
    assert [e["extensions"]["code"] for e in interrupted[0]["payload"]["errors"]] == ["UNAVAILABLE"]
    assert interrupted[0]["payload"]["errors"][0]["message"] == (
        "Live events interrupted; subscribe again"
    )
    assert interrupted[-1] == {"id": "1", "type": "complete"}
    kinds = [m["payload"]["data"]["consultationEvents"]["kind"] for m in resumed]
    assert kinds == ["current", "updated"]
    assert resumed[1]["payload"]["data"]["consultationEvents"]["consultation"]["status"] == (
        "CANCELLED"
    )
    assert health == 200


# --- 2. Pool exhausted ------------------------------------------------------------------------


def test_with_every_pooled_connection_busy_a_request_gets_503_after_the_acquire_timeout(own_pg):
    env = own_pg.env
    (first, first_patient), (second, second_patient) = env.patients()[:2]
    settings = env.settings(
        db_pool_min_size=1,
        db_pool_max_size=1,
        db_acquire_timeout_seconds=1,
        db_statement_timeout_ms=60_000,
    )

    async def scenario(url: str) -> tuple[httpx.Response, bool, httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            async with table_locked(env) as admin:
                holding = asyncio.create_task(post(http, env.token(first)))
                await wait_for_blocked_statements(admin, 1)
                refused = await post(http, env.token(second))
                locked_throughout = await still_locked(admin) and not holding.done()
            held = await holding
            later = await post(http, env.token(second))
        return refused, locked_throughout, held, later

    with serving(create_app(settings)) as server:
        refused, locked_throughout, held, later = asyncio.run(scenario(server.url))

    assert_unavailable(refused)
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    assert locked_throughout, "the 503 came only after the only connection was free again"
    assert_own_consultations(held, env, first_patient)
    assert_own_consultations(later, env, second_patient)


# --- 3. Slow statements: statement timeout ----------------------------------------------------


def test_a_statement_blocked_past_the_statement_timeout_is_cancelled_and_its_connection_reused(
    own_pg,
):
    env = own_pg.env
    subject, patient = env.patients()[0]
    settings = env.settings(db_pool_min_size=1, db_pool_max_size=1, db_statement_timeout_ms=300)

    async def backends() -> set[int]:
        connection = await asyncpg.connect(env.admin_url)
        try:
            rows = await connection.fetch(
                f"select pid from pg_stat_activity where {GATEWAY_BACKENDS}"
            )
        finally:
            await connection.close()
        return {row["pid"] for row in rows}

    async def scenario(url: str) -> tuple[httpx.Response, bool, set[int], httpx.Response, set[int]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            before = await backends()
            async with table_locked(env) as admin:
                cancelled = await post(http, env.token(subject))
                locked_throughout = await still_locked(admin)
            answered = await post(http, env.token(subject))
            return cancelled, locked_throughout, before, answered, await backends()

    with serving(create_app(settings)) as server:
        cancelled, locked_throughout, before, answered, after = asyncio.run(scenario(server.url))

    assert_unavailable(cancelled)
    assert cancelled.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    assert locked_throughout, "PostgreSQL cancelled the statement while the lock was held"
    assert_own_consultations(answered, env, patient)
    assert len(before) == 1 and after == before, "the one pooled connection served on"


def test_statement_timeout_zero_sends_none_and_the_login_roles_own_setting_applies(own_pg):
    env = own_pg.env
    subject, patient = env.patients()[1]
    database = env.admin_url.rsplit("/", 1)[1]

    async def role_timeout(value: str | None) -> None:
        connection = await asyncpg.connect(env.admin_url)
        try:
            if value is None:
                await connection.execute(
                    f'alter role gateway_app in database "{database}" reset statement_timeout'
                )
            else:
                await connection.execute(
                    f'alter role gateway_app in database "{database}" '
                    f"set statement_timeout = '{value}'"
                )
        finally:
            await connection.close()

    async def shown(settings: Any) -> str:
        database_ = await Database.connect(settings)
        try:
            return (await database_.fetch("show statement_timeout"))[0][0]
        finally:
            await database_.close()

    async def scenario(url: str) -> tuple[httpx.Response, bool]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http, table_locked(env) as admin:
            cancelled = await post(http, env.token(subject))
            return cancelled, await still_locked(admin)

    asyncio.run(role_timeout("250ms"))
    try:
        none_sent = env.settings(db_statement_timeout_ms=0, db_pool_max_size=1)
        assert asyncio.run(shown(none_sent)) == "250ms"
        assert asyncio.run(shown(env.settings(db_statement_timeout_ms=4000))) == "4s"
        with serving(create_app(none_sent)) as server:
            cancelled, locked_throughout = asyncio.run(scenario(server.url))
            answered = httpx.post(
                server.url + "/graphql",
                json={"query": LIST},
                headers={"authorization": f"Bearer {env.token(subject)}"},
            )
    finally:
        asyncio.run(role_timeout(None))
    assert_unavailable(cancelled)
    assert locked_throughout, "the role's 250ms timeout cancelled the statement"
    assert_own_consultations(answered, env, patient)


@pytest.fixture(scope="module")
def pgbouncer(own_pg) -> Iterator[str]:
    """PgBouncer in transaction mode in front of the test's cluster; yields the gateway's URL
    through it."""
    directory = Path(tempfile.mkdtemp(prefix="gateway-faults-pgbouncer-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    database = own_pg.env.app_url.rsplit("/", 1)[1]
    (directory / "users.txt").write_text('"gateway_app" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{database} = host=127.0.0.1 port={own_pg.port} dbname={database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
    )
    command = ["pgbouncer", str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        directory.chmod(0o755)
        shutil.chown(directory, "postgres", "postgres")
        for item in directory.iterdir():
            shutil.chown(item, "postgres", "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "pgbouncer did not listen"
            time.sleep(0.05)
        app = own_pg.env.app_url
        yield app.replace(f":{own_pg.port}/", f":{port}/")
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(directory, ignore_errors=True)


def test_pgbouncer_in_transaction_mode_refuses_the_timeout_parameter_and_zero_sends_none(
    own_pg, pgbouncer
):
    env = own_pg.env
    subject, patient = env.patients()[2]

    with pytest.raises(ConfigurationError) as refused:
        asyncio.run(
            Database.connect(env.settings(database_url=pgbouncer, db_statement_cache_size=0))
        )
    assert "statement_timeout" in refused.value.message

    settings = env.settings(
        database_url=pgbouncer, db_statement_cache_size=0, db_statement_timeout_ms=0
    )
    with serving(create_app(settings)) as server:
        response = httpx.post(
            server.url + "/graphql",
            json={"query": LIST},
            headers={"authorization": f"Bearer {env.token(subject)}"},
        )
    assert_own_consultations(response, env, patient)


# --- 4. SIGTERM -----------------------------------------------------------------------------------


def _refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _post_in_thread(url: str, token: str) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["response"] = post(httpx.Client(base_url=url, timeout=60), token)
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


async def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    await until(condition, seconds, what)


def test_sigterm_stops_accepting_lets_the_request_in_flight_finish_and_exits_0(own_pg):
    env = own_pg.env
    subject, patient = env.patients()[3]
    with gateway_serve(env, GATEWAY_SHUTDOWN_GRACE_SECONDS="20") as (process, url):
        port = int(url.rsplit(":", 1)[1])

        async def scenario() -> tuple[bool, bool, dict[str, Any]]:
            async with table_locked(env) as admin:
                thread, result = _post_in_thread(url, env.token(subject))
                await wait_for_blocked_statements(admin, 1)
                process.send_signal(signal.SIGTERM)
                await _wait_until(lambda: _refuses_connections(port), "listener closed")
                running = process.poll() is None and thread.is_alive()
                locked = await still_locked(admin)
            await _wait_until(lambda: not thread.is_alive(), "request in flight answered")
            return running, locked, result

        running, locked, result = asyncio.run(scenario())
        returncode = process.wait(timeout=30)
        _, stderr = process.communicate(timeout=10)

    assert running and locked, "new connections were refused while the request was in flight"
    assert_own_consultations(result["response"], env, patient)
    assert returncode == 0, stderr
    assert "Traceback" not in stderr, stderr


def test_sigterm_past_the_grace_period_cuts_the_request_and_still_exits(own_pg):
    env = own_pg.env
    subject, _ = env.patients()[4]
    with gateway_serve(env, GATEWAY_SHUTDOWN_GRACE_SECONDS="1") as (process, url):

        async def scenario() -> tuple[int, bool, dict[str, Any]]:
            async with table_locked(env) as admin:
                thread, result = _post_in_thread(url, env.token(subject))
                await wait_for_blocked_statements(admin, 1)
                process.send_signal(signal.SIGTERM)
                await _wait_until(lambda: process.poll() is not None, "the process exited")
                locked = await still_locked(admin)
                await _wait_until(lambda: not thread.is_alive(), "the request ended")
                return process.returncode, locked, result

        returncode, locked, result = asyncio.run(scenario())
        _, stderr = process.communicate(timeout=10)

    assert locked, "the process exited while the request's statement was still blocked"
    assert returncode == 0, stderr
    cut = result["response"]
    assert_unavailable(cut)
    assert cut.json()["errors"][0] == {
        "message": "Server shutting down",
        "extensions": {"code": "UNAVAILABLE"},
    }
    assert cut.headers["connection"] == "close"
