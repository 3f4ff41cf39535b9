"""One command: seed a realistic data set, start the gateway in production mode beside its
baselines, load them with a bounded, repeatable load on loopback, print the report.

    python -m bench.run                      # 1,000 patients x 50 consultations, 200 clinicians
    python -m bench.run --patients 10000     # the --scale of the issue
    python -m bench.run --quick              # a small smoke run

Systems: ``gateway`` (production mode, trusted documents by hash, every limit on), ``nochecks``
(the same without field permission checks, to price them), ``floor`` (hand-written asyncpg
queries on a bare Starlette endpoint) and, when Node.js 22 and PostGraphile V5 are installed
under bench/.node (``bench/postgraphile/install.sh``), ``postgraphile`` over the same tables
with equivalent row-level security. Servers are pinned to core 0, the load generator to core 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.load import post_request

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
OUT = ROOT / "bench" / "out"
QUERIES = ("Q1", "Q2", "Q3", "Q4", "Q5")
OPERATIONS = ROOT / "bench" / "operations.graphql"


def _sh(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def _cores() -> tuple[list[str], list[str]]:
    """taskset prefixes: servers on core 0, load on core 1 (when there are two)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    return [], []


async def prepare_database(
    server_url: str, patients: int, clinicians: int, consultations: int, issuer: str
) -> tuple[str, str]:
    from gateway.dev.embedded import provision, with_credentials
    from gateway.dev.seed import SeedPlan, seed_database, write_demo_media

    name = f"bench_{patients}_{clinicians}_{consultations}"
    connection = await asyncpg.connect(server_url)
    try:
        exists = await connection.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            await connection.execute(f'create database "{name}"')
    finally:
        await connection.close()
    admin_url = with_credentials(server_url, "postgres", "", database=name)
    app_url = await provision(admin_url, "bench-only-password")
    connection = await asyncpg.connect(admin_url)
    try:
        if not await connection.fetchval("select exists (select 1 from data.patients)"):
            print(f"seeding {patients} patients x {consultations} consultations ...", flush=True)
            await seed_database(
                connection, SeedPlan(patients, clinicians, consultations, 7), issuer
            )
            await write_demo_media(connection, WORK / "media")
        # Every run starts from the same state: the access log of earlier runs (millions of
        # events) would otherwise grow the indexes and keep autovacuum busy beside the servers.
        async with connection.transaction():
            await connection.execute("set local session_replication_role = replica")
            await connection.execute("truncate data.access_events")
            await connection.execute(
                "update data.audit_chain_head set last_seq = 0, "
                "last_hash = sha256(convert_to('consultation-gateway audit', 'UTF8'))"
            )
            await connection.execute(
                "update data.audit_chains set last_seq = 0, last_hash = "
                "sha256(convert_to('consultation-gateway audit chain ' || id, 'UTF8'))"
            )
            await connection.execute("alter sequence data.access_event_seq restart with 1")
        await connection.execute("vacuum analyze")
    finally:
        await connection.close()
    return admin_url, app_url


DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")


async def _server_settings(admin_url: str) -> dict[str, str]:
    """The server's version and durability settings, as the server itself reports them."""
    connection = await asyncpg.connect(admin_url)
    try:
        names = ("server_version", *DURABILITY)
        return {name: await connection.fetchval(f"show {name}") for name in names}
    finally:
        await connection.close()


def _disk(data: Path) -> str:
    """The file system and device PostgreSQL writes to (what a commit's flush waits for)."""
    try:
        source, kind = _sh("df", "--output=source,fstype", str(data)).stdout.split()[-2:]
    except (subprocess.CalledProcessError, ValueError, FileNotFoundError):
        return "unknown"
    device = Path(source).name
    rotational = Path(f"/sys/block/{device}/queue/rotational")
    medium = ""
    if rotational.exists():
        medium = ", rotational" if rotational.read_text().strip() == "1" else ", solid state"
    return f"{kind} on {source}{medium}"


async def callers(admin_url: str, count: int) -> list[dict]:
    connection = await asyncpg.connect(admin_url)
    try:
        rows = await connection.fetch(
            "select a.subject, a.patient_id, (select c.id from data.consultations c "
            "where c.patient_id = a.patient_id order by c.scheduled_at desc limit 1) as one "
            "from data.accounts a where a.role = 'patient' order by a.subject limit $1",
            count,
        )
    finally:
        await connection.close()
    return [
        {"subject": r["subject"], "patient": str(r["patient_id"]), "one": str(r["one"])}
        for r in rows
    ]


def build_requests(
    system: str,
    port: int,
    query: str,
    people: list[dict],
    tokens: dict,
    support: str,
    manifest: dict,
    count: int,
) -> list[bytes]:
    out = []
    for index in range(count):
        person = people[index % len(people)]
        token = support if query == "Q4" else tokens[person["subject"]]
        if system == "floor":
            body = {"patient": person["patient"], "consultation": person["one"]}
            out.append(post_request(port, f"/q/{query.lower()}", body, {}))
            continue
        if system.startswith("postgraphile"):
            from bench.postgraphile import requests as pg_requests

            out.append(pg_requests.request(port, query, person, token))
            continue
        variables = {"id": encode_consultation(person["one"])} if query == "Q3" else {}
        body = {
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": manifest[query]}},
            "variables": variables,
        }
        out.append(post_request(port, "/graphql", body, {"Authorization": f"Bearer {token}"}))
    return out


def encode_consultation(pk: str) -> str:
    from uuid import UUID

    from gateway.ids import encode_global_id

    return encode_global_id("Consultation", UUID(pk))


def _statements(system: str, port: int) -> float:
    try:
        if system == "floor":
            return float(httpx.get(f"http://127.0.0.1:{port}/stats").json()["count"])
        if system.startswith("postgraphile") or system == "gateway2w":
            return float("nan")  # no statement count, or one per worker
        for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
            if line.startswith("gateway_db_statements_total "):
                return float(line.split()[1])
    except httpx.HTTPError:
        pass
    return float("nan")


def load(port: int, requests: list[bytes], concurrency: int, pin: list[str]) -> dict:
    spec = json.dumps(
        {
            "host": "127.0.0.1",
            "port": port,
            "concurrency": concurrency,
            "requests": [r.hex() for r in requests],
        }
    )
    done = subprocess.run(
        [*pin, sys.executable, "-m", "bench.load"],
        input=spec,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout)


def start_server(
    name: str, app: str, port: int, env: dict, pin: list[str], workers: int = 1
) -> subprocess.Popen:
    command = [
        *pin,
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    # The server's log (one JSON line per request, as in production) goes to a file: a pipe
    # nobody reads would fill and stall the server.
    log = WORK / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} did not start: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            probe = "/stats" if name == "floor" else "/healthz"
            if httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=1).status_code == 200:
                return process
        time.sleep(0.2)
    raise SystemExit(f"{name} did not start in time")


def gateway_environment(app_url: str, identity: Any, manifest: Path, pool: int) -> dict[str, str]:
    """The gateway's settings in the bench: production's, the rate limits raised out of the way
    (one support account sends every Q4) and the page size Q4 needs. The pool wait is
    production's (2 s): a request that cannot get a connection in time is a 503, counted and
    reported, never hidden by a longer wait."""
    return {
        "GATEWAY_MODE": "production",
        "DATABASE_URL": app_url,
        "GATEWAY_JWT_ISSUER": identity.issuer,
        "GATEWAY_JWT_AUDIENCE": identity.audience,
        "GATEWAY_JWKS_FILE": str(identity.jwks_file),
        "GATEWAY_MEDIA_SIGNING_KEYS": f"bench:{secrets.token_urlsafe(32)}",
        "GATEWAY_MEDIA_ROOT": str(WORK / "media"),
        "GATEWAY_TRUSTED_DOCUMENTS": str(manifest),
        "GATEWAY_FREE_FORM_DOCUMENTS": "nobody",
        "GATEWAY_PAGE_SIZE_MAX": "500",
        "GATEWAY_DB_POOL_MAX_SIZE": str(pool),
        "GATEWAY_RATE_LIMIT_REQUESTS_PER_MINUTE": "100000000",
        "GATEWAY_RATE_LIMIT_FIELD_CALLS_PER_MINUTE": "100000000",
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


PORTS = {
    "gateway": 18081,
    "nochecks": 18082,
    "floor": 18083,
    "postgraphile": 18084,
    "postgraphile-roles": 18087,
    "gateway2w": 18085,
    "interpreted": 18086,
}
APPS = {
    "gateway": "gateway.app:create_app_from_environment",
    "gateway2w": "gateway.app:create_app_from_environment",
    "nochecks": "bench.nochecks:create_app",
    "floor": "bench.floor:create_app",
    "interpreted": "bench.interpreted:create_app",
}


def check_answers(systems: list[str], people: list[dict], send) -> dict[str, str]:
    """For each query, "" when every system answers the same rows and fields without errors
    for the same three callers (support's for Q4), else why not."""
    from bench.answers import canonical, compare

    verdicts = {}
    for query in QUERIES:
        answers: dict[str, list] = {}
        reason = ""
        for system in systems:
            answered = []
            for person in people[:3]:
                body = json.loads(send(system, query, person)[1])
                shape, why = canonical(system, body)
                reason = reason or why
                answered.append(shape)
            answers[system] = answered
        verdicts[query] = reason or compare(answers)
    return verdicts


def expected_answers(systems: list[str], people: list[dict], send) -> dict[tuple, str]:
    """Before timing: the digest of each system's answer to each query for every caller (one
    for Q4: support's, whoever the caller). Every timed answer is checked against these."""
    from bench.answers import digest

    expected: dict[tuple, str] = {}
    for system in systems:
        for query in QUERIES:
            for number, person in enumerate(people):
                if query == "Q4" and number:
                    expected[(system, query, number)] = expected[(system, query, 0)]
                    continue
                expected[(system, query, number)] = digest(system, *send(system, query, person))
    return expected


def relaxed_settings(env: dict[str, str]) -> list[str]:
    """Every production default the bench's gateway runs without, with both values."""
    from gateway.config import Settings

    relaxed = []
    for variable, value in sorted(env.items()):
        name = variable.removeprefix("GATEWAY_").lower()
        field = Settings.model_fields.get(name)
        if field is None or not isinstance(field.default, int | float):
            continue  # not a limit: where things are, keys, the mode
        if str(field.default) != value:
            relaxed.append(f"{variable}={value} (production default {field.default})")
    return relaxed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", "--scale", type=int, default=1000)
    parser.add_argument("--clinicians", type=int, default=200)
    parser.add_argument("--consultations", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8,16,32,64")
    parser.add_argument(
        "--systems",
        default="gateway,nochecks,floor,postgraphile,postgraphile-roles,gateway2w,interpreted",
    )
    parser.add_argument("--pool", type=int, default=10, help="database pool per server")
    parser.add_argument("--quick", action="store_true", help="200 patients, 1 round, c=1,16")
    parser.add_argument(
        "--relaxed-durability",
        action="store_true",
        help="PostgreSQL with fsync, synchronous_commit and full_page_writes off (not for figures "
        "anyone quotes: the report says so)",
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help="where the report goes (default bench/out)"
    )
    args = parser.parse_args()
    if args.quick:
        args.patients, args.clinicians, args.rounds, args.requests = 200, 40, 1, 100
        args.concurrency = "1,16"
    levels = [int(c) for c in args.concurrency.split(",")]
    systems = [s for s in args.systems.split(",") if s]
    if (
        any(system.startswith("postgraphile") for system in systems)
        and not (ROOT / "bench" / ".node" / "node_modules" / ".bin" / "postgraphile").exists()
    ):
        print("postgraphile: not installed (bench/postgraphile/install.sh); skipped", flush=True)
        systems = [system for system in systems if not system.startswith("postgraphile")]
    args.commit = commit()  # before the run: what it measured, not what changed meanwhile
    WORK.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    from bench.answers import digest
    from bench.cpu import cpu_seconds, pin, postmaster_pid, rss_mb
    from gateway.dev.embedded import EmbeddedPostgres
    from gateway.dev.identity import DevIdentity
    from gateway.guards.trusted_documents import build_manifest
    from resolvers import build_schema

    identity = DevIdentity.load_or_create(WORK / "identity")
    cluster = EmbeddedPostgres(WORK, fast=args.relaxed_durability)
    server_url = cluster.start()
    processes: dict[str, subprocess.Popen] = {}
    server_pin, load_pin = _cores()
    postgres = postmaster_pid(cluster.data)
    args.placement = (
        "servers on core 0 (gateway2w: 2 workers on cores 0-1), PostgreSQL and the load "
        "generator on core 1"
        if pin(postgres, "1") and server_pin
        else "not pinned (taskset or a second core missing)"
    )
    try:
        admin_url, app_url = asyncio.run(
            prepare_database(
                server_url, args.patients, args.clinicians, args.consultations, identity.issuer
            )
        )
        people = asyncio.run(callers(admin_url, 200))
        args.server = asyncio.run(_server_settings(admin_url))
        args.postgres_version = args.server["server_version"]
        args.disk = _disk(cluster.data)
        tokens = {p["subject"]: identity.token(p["subject"], ttl=6 * 3600) for p in people}
        support = identity.token("support-0001", ttl=6 * 3600)
        built = build_manifest([OPERATIONS], build_schema()._schema)
        (WORK / "manifest.json").write_text(json.dumps(built))
        manifest = {o["name"]: o["id"] for o in built["operations"]}
        gateway_env = gateway_environment(app_url, identity, WORK / "manifest.json", args.pool)
        for system in systems:
            if system.startswith("postgraphile"):
                from bench.postgraphile import requests as pg_requests

                pg_requests.prepare(admin_url)
                processes[system] = pg_requests.start(
                    PORTS[system],
                    app_url,
                    server_pin,
                    args.pool,
                    roles=system == "postgraphile-roles",
                    jwks={
                        "JWKS_FILE": str(identity.jwks_file),
                        "JWT_ISSUER": identity.issuer,
                        "JWT_AUDIENCE": identity.audience,
                    },
                    token=support,
                )
                continue
            env = gateway_env if system != "floor" else {"FLOOR_DATABASE_URL": admin_url}
            both = ["taskset", "-c", "0-1"]
            pin_to = both if system == "gateway2w" and server_pin else server_pin
            workers = 2 if system == "gateway2w" else 1
            processes[system] = start_server(
                system, APPS[system], PORTS[system], env, pin_to, workers
            )

        def send(system: str, query: str, person: dict) -> tuple[int, str]:
            request = build_requests(
                system, PORTS[system], query, [person], tokens, support, manifest, 1
            )[0]
            head, _, body = request.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split()[1]
            headers = dict(line.split(": ", 1) for line in lines[1:])
            headers.pop("Content-Length", None)
            response = http.post(
                f"http://127.0.0.1:{PORTS[system]}{path}", content=body, headers=headers
            )
            return response.status_code, response.text

        http = httpx.Client(timeout=60)

        for system in systems:  # warm-up: caches, pools, prepared statements
            for query in QUERIES:
                load(
                    PORTS[system],
                    build_requests(
                        system, PORTS[system], query, people, tokens, support, manifest, 100
                    ),
                    8,
                    load_pin,
                )
        args.comparable = check_answers(systems, people, send)
        expected = expected_answers(systems, people, send)
        for query, reason in args.comparable.items():
            differ = sum(
                1
                for number in range(len(people))
                if len({expected[(system, query, number)] for system in systems}) > 1
            )
            if not reason and differ:
                args.comparable[query] = f"{differ} of {len(people)} callers answered differently"
        args.relaxed = relaxed_settings(gateway_env)
        for query, reason in args.comparable.items():
            print(f"{query}: {'comparable' if not reason else 'NOT comparable: ' + reason}")

        results: dict = {}
        for round_number in range(args.rounds):
            for query in QUERIES:
                for concurrency in levels:
                    for system in systems:
                        port, pid = PORTS[system], processes[system].pid
                        requests = build_requests(
                            system, port, query, people, tokens, support, manifest, args.requests
                        )
                        cpu, db = cpu_seconds(pid), cpu_seconds(postgres)
                        statements = _statements(system, port)
                        outcome = load(port, requests, concurrency, load_pin)
                        cpu, db = cpu_seconds(pid) - cpu, cpu_seconds(postgres) - db
                        statements = _statements(system, port) - statements
                        bad = sum(v for k, v in outcome["statuses"].items() if k != "200")
                        if bad:
                            print(f"{system} {query} c={concurrency}: {bad} non-200", flush=True)
                        wrong = sum(
                            1
                            for number, (status, text) in enumerate(outcome["answers"])
                            if digest(system, status, text)
                            != expected[(system, query, number % len(people))]
                        )
                        if wrong:
                            print(
                                f"{system} {query} c={concurrency}: {wrong} answers differ from "
                                "the check before timing",
                                flush=True,
                            )
                        n = len(outcome["latencies"])
                        results.setdefault((system, query, concurrency), []).append(
                            {
                                "throughput": n / outcome["elapsed"],
                                "p50": percentile(outcome["latencies"], 0.5) * 1000,
                                "p99": percentile(outcome["latencies"], 0.99) * 1000,
                                "cpu_per_request_ms": cpu / n * 1000,
                                "db_cpu_per_request_ms": db / n * 1000,
                                "statements": statements / n,
                                "rss_mb": rss_mb(pid),
                                "errors": bad,
                                "wrong": wrong,
                                "verified": n,
                            }
                        )
            print(f"round {round_number + 1}/{args.rounds} done", flush=True)
        report(results, systems, levels, args)
        http.close()
        wrong = sum(run["wrong"] for runs in results.values() for run in runs)
        if wrong:
            raise SystemExit(f"{wrong} timed answers differed from the check before timing")
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGINT)
        for process in processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        cluster.stop()


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def versions(postgres: str) -> str:
    """The versions of everything measured."""
    from importlib.metadata import version

    packages = ("strawberry-graphql", "graphql-core", "starlette", "uvicorn", "asyncpg", "orjson")
    parts = [f"{name} {version(name)}" for name in packages]
    parts.append(f"PostgreSQL {postgres}")
    peer = ROOT / "bench" / ".node" / "node_modules" / "postgraphile" / "package.json"
    if peer.exists():
        parts.append(f"postgraphile {json.loads(peer.read_text())['version']}")
        node = ROOT / "bench" / ".node" / "node_modules" / ".bin" / "node"
        if node.exists():
            parts.append(f"node {_sh(str(node), '--version').stdout.strip()}")
    return "versions: " + ", ".join(parts)


def commit() -> str:
    """The commit measured, and whether the working tree differed from it."""
    try:
        head = _sh("git", "-C", str(ROOT), "rev-parse", "HEAD").stdout.strip()
        dirty = _sh("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no").stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes" if dirty.strip() else "")


def report(results: dict, systems: list[str], levels: list[int], args) -> None:
    header = (
        "system",
        "query",
        "c",
        "req/s (min-max)",
        "p50 ms",
        "p99 ms",
        "app CPU ms/req",
        "DB CPU ms/req",
        "SQL/req",
        "RSS MB",
        "non-200",
        "wrong/verified",
    )
    rows = []
    for (system, query, concurrency), runs in sorted(results.items()):
        rows.append(
            (
                system,
                query,
                str(concurrency),
                f"{_median(runs, 'throughput'):.0f} "
                f"({min(r['throughput'] for r in runs):.0f}-"
                f"{max(r['throughput'] for r in runs):.0f})",
                f"{_median(runs, 'p50'):.1f}",
                f"{_median(runs, 'p99'):.1f}",
                f"{_median(runs, 'cpu_per_request_ms'):.2f}",
                f"{_median(runs, 'db_cpu_per_request_ms'):.2f}",
                f"{_median(runs, 'statements'):.1f}",
                f"{_median(runs, 'rss_mb'):.0f}",
                str(sum(r["errors"] for r in runs)),
                f"{sum(r['wrong'] for r in runs)}/{sum(r['verified'] for r in runs)}",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]

    def metric(system, query, c, key):
        runs = results.get((system, query, c))
        return _median(runs, key) if runs else float("nan")

    def total_cpu(system, query, c):
        return metric(system, query, c, "cpu_per_request_ms") + metric(
            system, query, c, "db_cpu_per_request_ms"
        )

    c16 = 16 if 16 in levels else levels[-1]
    comparable = {q for q, reason in args.comparable.items() if not reason}
    peers = [s for s in ("postgraphile", "postgraphile-roles") if s in systems]

    def peer(query: str) -> str:
        """The peer configuration that served ``query`` faster: the targets are met against
        the better of the two ways its users could run it, never the worse."""
        return max(peers, key=lambda s: metric(s, query, c16, "throughput"))

    ratios = []
    for query in QUERIES:
        if query not in comparable:
            ratios.append(f"{query}: not comparable ({args.comparable[query]}): no ratios")
            continue
        gateway = metric("gateway", query, c16, "throughput")
        parts = [
            f"gateway/floor {gateway / metric('floor', query, c16, 'throughput'):.2f}",
            f"checks on/off {gateway / metric('nochecks', query, c16, 'throughput'):.2f}",
        ]
        if "interpreted" in systems:
            interpreted = metric("interpreted", query, c16, "throughput")
            parts.append(f"plans on/off {gateway / interpreted:.2f}")
        for other in peers:
            ratio = gateway / metric(other, query, c16, "throughput")
            parts.append(f"gateway/{other} {ratio:.2f}")
        ratios.append(f"{query} c={c16} throughput: " + ", ".join(parts))
    targets = []  # issue 22's, each measured by this run
    if peers:
        for query, floor in (("Q1", 1.0), ("Q2", 1.0), ("Q3", 1.0), ("Q2", 1.5)):
            name = f"{query} throughput at c={c16} >= {floor:.1f}x PostGraphile's ({peer(query)})"
            if floor > 1:
                name += " (stretch)"
            if query not in comparable:
                targets.append((name, "not comparable", False))
                continue
            vs = metric("gateway", query, c16, "throughput") / metric(
                peer(query), query, c16, "throughput"
            )
            targets.append((name, f"{vs:.2f}x", vs >= floor))
        for query in ("Q1", "Q2", "Q3"):
            ours, theirs = total_cpu("gateway", query, c16), total_cpu(peer(query), query, c16)
            targets.append(
                (
                    f"{query} total CPU/request (server + PostgreSQL) <= PostGraphile's "
                    f"({peer(query)})",
                    f"{ours:.2f} vs {theirs:.2f} ms",
                    ours <= theirs,
                )
            )
        for query in ("Q1", "Q2", "Q3"):
            ours = metric("gateway", query, c16, "p99")
            theirs = metric(peer(query), query, c16, "p99")
            targets.append(
                (
                    f"{query} p99 at c={c16} <= PostGraphile's ({peer(query)})",
                    f"{ours:.1f} vs {theirs:.1f} ms",
                    ours <= theirs,
                )
            )
    if "floor" in systems:
        app_ratio = metric("gateway", "Q2", c16, "cpu_per_request_ms") / metric(
            "floor", "Q2", c16, "cpu_per_request_ms"
        )
        targets.append(
            ("Q2 gateway app CPU <= 2x the floor's", f"{app_ratio:.2f}x", app_ratio <= 2)
        )
    for c in (16, 64):
        if c not in levels:
            continue
        bad = sum(
            run["errors"]
            for (system, _, level), runs in results.items()
            if system == "gateway" and level == c
            for run in runs
        )
        targets.append(
            (f"zero non-200 for every query at c={c}, production defaults", f"{bad}", bad == 0)
        )
    wrong = sum(run["wrong"] for runs in results.values() for run in runs)
    verified = sum(run["verified"] for runs in results.values() for run in runs)
    targets.append(("every timed answer verified", f"{wrong} of {verified} differ", wrong == 0))
    environment = (
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores ({args.placement}); {args.patients} patients x "
        f"{args.consultations} consultations, {args.clinicians} clinicians; {args.requests} "
        f"requests x {args.rounds} rounds per cell; medians; pool {args.pool} per server; "
        "floor: hand-written SQL as the table owner (no row-level security)"
    )
    durability = ", ".join(f"{name} {args.server[name]}" for name in DURABILITY)
    relaxed_durability = " (RELAXED: --relaxed-durability)" if args.relaxed_durability else ""
    checks = [
        f"PostgreSQL durability: {durability}{relaxed_durability}; data on {args.disk}",
        f"every timed answer checked against the answer before timing for its caller: "
        f"{wrong} of {verified} differed",
        "gateway settings relaxed from production defaults: "
        + ("; ".join(args.relaxed) if args.relaxed else "none"),
    ]
    if peers:
        checks.append(
            "postgraphile verifies each bearer token (ES256, issuer, audience, expiry) against "
            "the gateway's JWKS, and takes the caller's role and patient from X-Role/X-Actor "
            "(the gateway reads them from its accounts table: one statement per request)"
        )
    text = "\n".join(
        [
            environment,
            f"commit: {args.commit}",
            versions(args.postgres_version),
            *checks,
            "",
            *lines,
            "",
            *ratios,
            "",
            *(f"[{'met' if ok else 'NOT met'}] {name}: {value}" for name, value, ok in targets),
        ]
    )
    print(text)
    (args.out / "report.txt").write_text(text + "\n")
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "cells": {f"{s}|{q}|{c}": runs for (s, q, c), runs in results.items()},
                "comparable": args.comparable,
                "commit": args.commit,
                "settings": {
                    **args.server,
                    "disk": args.disk,
                    "relaxed_durability": args.relaxed_durability,
                    "relaxed": args.relaxed,
                },
                "targets": [
                    {"target": name, "value": value, "met": ok} for name, value, ok in targets
                ],
            },
            indent=1,
        )
    )
    from bench.plot import plot

    if not plot(args.out / "results.json", args.out / "latency.png"):
        print("no plot: matplotlib is missing (the bench extra)")


if __name__ == "__main__":
    main()
