"""Failover under load, with real parts on one machine: a PostgreSQL primary and a streaming
standby, PgBouncer in transaction mode in front, two ``gateway serve`` processes, and patients, a
partner and a clinician calling them while the primary is killed (``kill -9``), the standby
promoted (``pg_ctl promote``) and PgBouncer moved to it (``RELOAD``).

Just before the kill, the standby's link to the primary is held (a relay in this module stops
passing on what the primary sends, as a slow or partitioned network would) for ``hold`` seconds
while the load goes on; the kill then drops what was held. With synchronous replication no commit
returns while the link is held, so no request can get a 200 for events the standby lacks. With
asynchronous replication the primary acknowledges them anyway, and they are gone after the
failover: ``python -m tests.failover --replication async`` shows that loss, which is what proves
the checks of tests/test_failover.py able to fail.

Every process started here is stopped in a ``finally`` (clusters with ``pg_ctl stop -m
immediate``, PgBouncer and the gateways by their process group or pid), also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import httpx

from gateway.ids import decode_global_id, encode_global_id
from tests.conftest import Environment, _prepare
from tests.subscriber import Subscriber
from tests.support import all_strings, gateway_serve, production_identity, run_gateway

ISSUER = "https://idp.failover.test"
PG_BIN = Path(shutil.which("pg_ctl") or "/usr/lib/postgresql/15/bin/pg_ctl").resolve().parent
STANDBY_NAME = "standby"
PARTNER_SCOPES = "patient/Consultation.rs patient/Recording.rs patient/Patient.rs"

PATIENT_READ = (
    "{ consultations(first: 100) { edges { node { id patient { id } "
    "recordings { id playbackUrl } } } } }"
)
OTHERS_READ = "{ consultations(first: 100) { edges { node { id patient { id } } } } }"
GRANT = (
    "mutation($p: ID!, $e: DateTime!) { grantConsent(partnerId: $p, "
    'scopes: ["patient/Consultation.rs"], expiresAt: $e) { id } }'
)
REVOKE = "mutation($id: ID!) { revokeConsent(id: $id) { id } }"
# The only bodies a 503 from /graphql may carry: the gateway's own words.
UNAVAILABLE_ERRORS = {
    ("Service temporarily unavailable", "UNAVAILABLE"),
    ("Request timed out", "UNAVAILABLE"),
    ("Server busy", "UNAVAILABLE"),
    ("Response withheld: the audit trail could not be written", "AUDIT_UNAVAILABLE"),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _owned_by_postgres(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


def _run(command: list[str]) -> str:
    completed = subprocess.run(
        _as_postgres(command), capture_output=True, text=True, timeout=60, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {completed.stderr or completed.stdout}")
    return completed.stdout


# --- PostgreSQL: a primary and its standby ------------------------------------------------------


@dataclasses.dataclass
class Cluster:
    """One PostgreSQL server in ``directory``, run as the ``postgres`` system user."""

    directory: Path
    port: int = dataclasses.field(default_factory=_free_port)

    @property
    def data(self) -> Path:
        return self.directory / "pg"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        _run([*initdb, "--encoding=UTF8", "--locale=C", "--no-instructions"])

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c full_page_writes=off -c wal_level=replica -c max_wal_senders=4 "
            # A standby whose primary is gone retries every 5 s by default, and promotion can
            # wait for the end of that pause.
            "-c wal_retrieve_retry_interval=200ms"
        )
        log = self.directory / "log"
        pg_ctl = str(PG_BIN / "pg_ctl")
        _run([pg_ctl, "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start"])

    def kill(self) -> None:
        """``kill -9`` of the postmaster and every process it started, as a crash would."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _parent_of(entry) == pid
        ]
        for victim in [pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)

    def promote(self) -> None:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "promote"])

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            pg_ctl = str(PG_BIN / "pg_ctl")
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )


def _parent_of(process: Path) -> int:
    try:
        return int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


class WalLink:
    """A TCP relay the standby reaches its primary through. ``hold()`` stops passing on what the
    primary sends (the standby receives nothing more and confirms nothing more); ``cut()`` closes
    every connection, dropping what was held, and refuses new ones."""

    def __init__(self, primary_port: int) -> None:
        self._primary_port = primary_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._cut = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                standby, _ = self._listener.accept()
            except OSError:
                return
            try:
                primary = socket.create_connection(("127.0.0.1", self._primary_port), timeout=5)
                primary.settimeout(None)
            except OSError:
                standby.close()
                continue
            self._sockets += [standby, primary]
            if self._cut:
                self._close_all()
                return
            for source, sink, gated in ((standby, primary, False), (primary, standby, True)):
                threading.Thread(target=self._pump, args=(source, sink, gated), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, gated: bool) -> None:
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            if gated:
                self._flowing.wait()
            if self._cut:
                break
            try:
                sink.sendall(chunk)
            except OSError:
                break
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def _close_all(self) -> None:
        for end in self._sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def hold(self) -> None:
        self._flowing.clear()

    def cut(self) -> None:
        self._cut = True
        self._flowing.set()
        self._listener.close()
        self._close_all()


# --- PgBouncer ---------------------------------------------------------------------------------


class Bouncer:
    """PgBouncer in transaction mode in front of one server; ``move_to`` points it at another
    (the ini's [databases] rewritten, then RELOAD on its admin console)."""

    def __init__(self, directory: Path, database: str, server_port: int) -> None:
        self.directory = _owned_by_postgres(directory)
        self.database = database
        self.port = _free_port()
        (directory / "users.txt").write_text('"gateway_app" ""\n"pgbouncer" ""\n')
        self._write(server_port)
        command = _as_postgres(["pgbouncer", str(directory / "pgbouncer.ini")])
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not listen: {self.log()}")
            time.sleep(0.05)

    def _write(self, server_port: int) -> None:
        (self.directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{self.database} = host=127.0.0.1 port={server_port} dbname={self.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'users.txt'}\n"
            "admin_users = pgbouncer\n"
            "pool_mode = transaction\n"
            # Try a server again soon after a failed login (default 15 s), and keep clients
            # queued for a server only briefly.
            "server_login_retry = 1\n"
            "query_wait_timeout = 10\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
        )
        for path in self.directory.iterdir():
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text()[-2000:] if path.exists() else ""

    @property
    def admin(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=pgbouncer dbname=pgbouncer"

    def move_to(self, server_port: int) -> None:
        self._write(server_port)
        subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-c", "RELOAD", self.admin],
            capture_output=True,
            timeout=30,
            check=True,
        )

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- the load ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """One request: what it was, how it ended, and the audit events a 200 obliges."""

    kind: str  # patient-read, playback, grant, revoke, clinician-read, partner-read
    subject: str
    gateway: int
    request_id: str
    started: float
    ended: float = 0.0
    status: int = 0  # 0: no HTTP response at all
    problem: str = ""  # a check of the response that failed
    events: set[tuple[str, UUID]] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class Timeline:
    held: float = 0.0
    killed: float = 0.0
    promoted: float = 0.0
    moved: float = 0.0


def _check_unavailable(response: httpx.Response, graphql: bool) -> str:
    if not response.headers.get("retry-after", "").isdigit():
        return f"503 without Retry-After: {dict(response.headers)}"
    if graphql:
        errors = response.json().get("errors", [])
        said = {(e["message"], e["extensions"]["code"]) for e in errors}
        if len(errors) != 1 or not said <= UNAVAILABLE_ERRORS:
            return f"503 body not the gateway's own: {response.text[:200]}"
    return ""


class Load:
    """Patients (reads, playbacks, consent grants and revocations), a partner and a clinician
    calling two gateways in turn until ``stop``; every response is checked as it arrives for
    rows of anyone else."""

    def __init__(self, env: Environment, gateways: list[str]) -> None:
        self.env = env
        self.gateways = gateways
        self.outcomes: list[Outcome] = []
        self.timeline = Timeline()
        self.stopping = asyncio.Event()
        truth = env.truth
        self._foreign = {patient: truth.global_ids_not_of(patient) for _, patient in env.patients()}
        self._partner_ok = next(p for p in env.principals if p["subject"] == "partner-0002")["id"]

    async def run(self, http: httpx.AsyncClient) -> list[asyncio.Task]:
        patients = self.env.patients()
        clinician_subject, clinician = self.env.clinicians()[0]
        # patient-00001 consented to partner-0001 in the seed; the patients that grant and
        # revoke do so to partner-0002, who never reads.
        tasks = [
            asyncio.create_task(self._patient(http, subject, patient, index))
            for index, (subject, patient) in enumerate(patients[1:5])
        ]
        tasks.append(asyncio.create_task(self._clinician(http, clinician_subject, clinician)))
        tasks.append(asyncio.create_task(self._partner(http, patients[0][1])))
        return tasks

    async def _call(
        self, http: httpx.AsyncClient, kind: str, subject: str, token: str, number: int, **request
    ) -> tuple[Outcome, httpx.Response | None]:
        gateway = number % len(self.gateways)
        outcome = Outcome(kind, subject, gateway, uuid.uuid4().hex, time.monotonic())
        headers = {"authorization": f"Bearer {token}", "x-request-id": outcome.request_id}
        response = None
        try:
            if "path" in request:
                response = await http.get(self.gateways[gateway] + request["path"], headers=headers)
            else:
                response = await http.post(
                    self.gateways[gateway] + "/graphql", json=request, headers=headers
                )
            outcome.status = response.status_code
            if response.status_code == 503:
                outcome.problem = _check_unavailable(response, "path" not in request)
            elif response.status_code not in (200,):
                outcome.problem = f"{response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            outcome.problem = f"no response: {exc!r}"
        outcome.ended = time.monotonic()
        self.outcomes.append(outcome)
        if outcome.status != 200:
            await asyncio.sleep(RETRY_PAUSE)
        ok = response is not None and response.status_code == 200 and not outcome.problem
        return outcome, response if ok else None

    async def _patient(
        self, http: httpx.AsyncClient, subject: str, patient: UUID, index: int
    ) -> None:
        token = self.env.token(subject)
        own = self.env.truth
        urls: list[str] = []
        consent: str | None = None
        number = index
        while not self.stopping.is_set():
            number += 1
            outcome, response = await self._call(
                http, "patient-read", subject, token, number, query=PATIENT_READ
            )
            if response is not None:
                body = response.json()
                edges = body.get("data", {}).get("consultations", {}).get("edges", [])
                sent = {decode_global_id(e["node"]["id"])[1] for e in edges}
                recordings = {
                    decode_global_id(r["id"])[1] for e in edges for r in e["node"]["recordings"]
                }
                foreign = set(all_strings(body)) & self._foreign[patient]
                if "errors" in body or sent != own.consultations_of_patient[patient]:
                    outcome.problem = f"not exactly their consultations: {body}"[:300]
                elif not recordings <= own.recordings_of_patient[patient] or foreign:
                    outcome.problem = f"foreign rows: {foreign or recordings}"
                else:
                    outcome.events = {("disclosure", patient)}
                urls = [r["playbackUrl"] for e in edges for r in e["node"]["recordings"]] or urls
            if urls:
                url = urlsplit(urls[number % len(urls)])
                outcome, response = await self._call(
                    http, "playback", subject, token, number, path=f"{url.path}?{url.query}"
                )
                if response is not None:
                    outcome.events = {("media", patient)}
            if number % 3 == 0:
                consent = await self._change_consent(http, subject, token, patient, number, consent)
            await asyncio.sleep(0.02)

    async def _change_consent(
        self,
        http: httpx.AsyncClient,
        subject: str,
        token: str,
        patient: UUID,
        number: int,
        consent: str | None,
    ) -> str | None:
        if consent is None:
            expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
            variables = {"p": self._partner_ok, "e": expires}
            outcome, response = await self._call(
                http, "grant", subject, token, number, query=GRANT, variables=variables
            )
            if response is None:
                return None
            outcome.events = {("consent-granted", patient)}
            return response.json()["data"]["grantConsent"]["id"]
        outcome, response = await self._call(
            http, "revoke", subject, token, number, query=REVOKE, variables={"id": consent}
        )
        if response is not None and response.json()["data"]["revokeConsent"] is not None:
            outcome.events = {("consent-revoked", patient)}
        return None if response is not None else consent

    async def _clinician(self, http: httpx.AsyncClient, subject: str, clinician: UUID) -> None:
        token = self.env.token(subject)
        truth = self.env.truth
        number = 0
        while not self.stopping.is_set():
            number += 1
            outcome, response = await self._call(
                http, "clinician-read", subject, token, number, query=OTHERS_READ
            )
            if response is not None:
                body = response.json()
                edges = body.get("data", {}).get("consultations", {}).get("edges", [])
                sent = {decode_global_id(e["node"]["id"])[1] for e in edges}
                owners = {decode_global_id(e["node"]["patient"]["id"])[1] for e in edges}
                if "errors" in body or sent != truth.consultations_of_clinician[clinician]:
                    outcome.problem = f"not exactly their consultations: {body}"[:300]
                elif not owners <= truth.patients_of_clinician[clinician]:
                    outcome.problem = f"foreign patients: {owners}"
                else:
                    outcome.events = {("disclosure", owner) for owner in owners}
            await asyncio.sleep(0.02)

    async def _partner(self, http: httpx.AsyncClient, consenting: UUID) -> None:
        token = self.env.token("partner-0001", scope=PARTNER_SCOPES)
        expected = self.env.truth.consultations_of_patient[consenting]
        number = 0
        while not self.stopping.is_set():
            number += 1
            outcome, response = await self._call(
                http, "partner-read", "partner-0001", token, number, query=OTHERS_READ
            )
            if response is not None:
                body = response.json()
                edges = body.get("data", {}).get("consultations", {}).get("edges", [])
                sent = {decode_global_id(e["node"]["id"])[1] for e in edges}
                owners = {e["node"]["patient"]["id"] for e in edges}
                if "errors" in body or sent != expected:
                    outcome.problem = f"not exactly the consenting patient's: {body}"[:300]
                elif owners != {encode_global_id("Patient", consenting)}:
                    outcome.problem = f"foreign patients: {owners}"
                else:
                    outcome.events = {("disclosure", consenting)}
            await asyncio.sleep(0.02)

    def answered(self, kind: str | None = None, after: float = 0.0, gateway: int = -1) -> int:
        return sum(
            1
            for o in self.outcomes
            if o.status == 200
            and o.started > after
            and (kind is None or o.kind == kind)
            and gateway in (-1, o.gateway)
        )


NO_RESPONSE = "no response"
# A caller refused waits this long before its next request (less than the Retry-After it is
# told, to see the service come back sooner than a patient client would).
RETRY_PAUSE = 0.2
KINDS = ("patient-read", "playback", "grant", "revoke", "clinician-read", "partner-read")


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


async def _recorded_events(url: str, request_ids: list[str]) -> dict[str, set[tuple[str, UUID]]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "select request_id, kind, patient_id from data.access_events "
            "where request_id = any($1::text[])",
            request_ids,
        )
    finally:
        await connection.close()
    recorded: dict[str, set[tuple[str, UUID]]] = {}
    for row in rows:
        recorded.setdefault(row["request_id"], set()).add((row["kind"], row["patient_id"]))
    return recorded


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
    primary = Cluster(_owned_by_postgres(root / "primary"))
    standby = Cluster(_owned_by_postgres(root / "standby"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(primary.stop)
        primary.initdb()
        primary.start()
        identity = production_identity(root / "identity", ISSUER)
        media = root / "media"
        media.mkdir()
        env = asyncio.run(_prepare(primary.url(), identity, media))
        database = env.admin_url.rsplit("/", 1)[1]
        if role_timeout:
            shown = asyncio.run(_set_role_timeout(env, database, role_timeout))
            print(f"statement_timeout of the application role: {shown}")

        # The standby: a base backup, streaming through the link under its own name.
        source = f"host=127.0.0.1 port={primary.port} user=postgres"
        basebackup = [str(PG_BIN / "pg_basebackup"), "-D", str(standby.data), "-R", "-c", "fast"]
        _run([*basebackup, "-X", "stream", "-d", source])
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
        recorded = asyncio.run(_recorded_events(new_primary, [o.request_id for o in answered]))
        missing = [o for o in answered if not o.events <= recorded.get(o.request_id, set())]
        verify = run_gateway("audit", "verify", "--database-url", new_primary, timeout=60)
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
        prog="python -m tests.failover",
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
