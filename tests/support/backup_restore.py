"""Backup and point-in-time recovery under load, with real parts on one machine: a PostgreSQL
primary archiving every WAL segment with ``barman-cloud-wal-archive`` to an S3-compatible server
(moto's server mode), a base backup taken with ``barman-cloud-backup`` while patients, a partner
and a clinician call ``gateway serve``; then the primary is destroyed (``kill -9``, its data
folder deleted) and a new server is made from the object store alone (``barman-cloud-restore``,
``barman-cloud-wal-restore`` as its ``restore_command``) to a point in time between the backup and
the end of the load. The tools are Barman Cloud 3.19.1, the version CloudNativePG's Barman Cloud
plugin runs in its sidecar, with the prod overlay's options (gzip, AES256 by the store).

What the new server must hold: the audit events of every request answered 200 before the target
time, none of any request sent after it, and a trail ``gateway audit verify`` passes. Measured on
the way: how long a commit waits to be in the archive (the archive's RPO: the most a restore from
the object store alone can lose) and how long the restore takes.

``python -m tests.support.backup_restore`` runs it and prints the report; ``--patients 1000
--consultations 50`` adds the bench's data set (``python -m bench.run``) to time its restore.
Every process started here is stopped in a ``finally``, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import boto3
import httpx

from tests.support.gateway_process import gateway_serve, run_gateway
from tests.support.load import Load, prepared_database, recorded_events
from tests.support.postgres_servers import Cluster, free_port, owned_by_postgres

ROOT = Path(__file__).resolve().parents[2]
BARMAN = ROOT / ".tools" / "barman" / "bin"
MOTO = Path(sys.executable).parent / "moto_server"
ISSUER = "https://idp.backup.test"
BUCKET = "gateway-db-backups"
SERVER_NAME = "gateway-db"  # the Cluster's name: the plugin's serverName
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "backup-test",
    "AWS_SECRET_ACCESS_KEY": "backup-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# A WAL segment goes to the archive at least this often (the prod overlay: 60 s; shorter here so
# the test takes seconds). The archive's RPO is this plus the upload.
ARCHIVE_TIMEOUT_SECONDS = 3


class ObjectStore:
    """moto's S3 server on a loopback port, with one bucket."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (root / "moto.log").open("w")
        self._process = subprocess.Popen(
            [str(MOTO), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url, timeout=1)
                break
            assert self._process.poll() is None, "moto_server exited"
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)
        self.client().create_bucket(Bucket=BUCKET)

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def objects(self) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)
        self._log.close()


def barman_command(tool: str, store: ObjectStore, *args: str) -> str:
    """A Barman Cloud command line as PostgreSQL runs it (archive_command, restore_command):
    credentials in its environment, the store's endpoint, the overlay's compression."""
    environment = " ".join(f"{name}={value}" for name, value in CREDENTIALS.items())
    return (
        f"{environment} {BARMAN / tool} --endpoint-url {store.url} "
        f"{' '.join(args)} s3://{BUCKET}/ {SERVER_NAME}"
    )


def barman(tool: str, store: ObjectStore, *args: str, as_postgres: bool = False) -> str:
    command = [str(BARMAN / tool), "--endpoint-url", store.url, *args]
    environ = {**os.environ, **CREDENTIALS}
    if as_postgres and os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", "env", *_env_args(), *command]
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environ, timeout=600, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{tool} failed: {completed.stderr or completed.stdout}")
    return completed.stdout


def _env_args() -> list[str]:
    return [f"{name}={value}" for name, value in CREDENTIALS.items()]


def configure(cluster: Cluster, lines: dict[str, str]) -> None:
    """Settings appended to the server's postgresql.auto.conf (as the postgres user owns it)."""
    text = "".join(f"{name} = '{value}'\n" for name, value in lines.items())
    path = cluster.data / "postgresql.auto.conf"
    with path.open("a") as conf:
        conf.write(text)


def archiving(store: ObjectStore) -> dict[str, str]:
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_timeout": f"{ARCHIVE_TIMEOUT_SECONDS}s",
        "archive_command": barman_command(
            "barman-cloud-wal-archive", store, "--gzip", "--encryption", "AES256"
        )
        + " %p",
    }


@dataclasses.dataclass
class Report:
    answered_before: int  # 200s whose response arrived before the target time
    sent_after: int  # requests sent after the target time
    after_backup_before_target: int  # 200s between the base backup's end and the target
    missing: list[str]  # request ids answered before the target whose events are not there
    present_after: list[str]  # request ids sent after the target whose events are there
    events_after_target: int  # events the restored trail holds that occurred after the target
    foreign: list[str]  # problems the load found in responses (rows of anyone else)
    verify: subprocess.CompletedProcess
    archive_lag_seconds: list[float]
    backup_seconds: float
    restore_seconds: float  # barman-cloud-restore, then replay until the server is promoted
    cluster_megabytes: float
    wal_segments: int

    def __str__(self) -> str:
        lag = ", ".join(f"{s:.1f}" for s in self.archive_lag_seconds)
        return "\n".join(
            [
                f"answered before the target: {self.answered_before} (after the base backup: "
                f"{self.after_backup_before_target}); sent after it: {self.sent_after}",
                f"missing from the restored trail: {len(self.missing)} {self.missing[:5]}",
                f"present though sent after the target: {len(self.present_after)}",
                f"events after the target in the restored trail: {self.events_after_target}",
                f"responses with someone else's rows: {len(self.foreign)} {self.foreign[:3]}",
                f"gateway audit verify on the restored server: exit {self.verify.returncode} "
                f"{(self.verify.stdout or self.verify.stderr).strip()[:200]}",
                f"archive lag of a commit (archive_timeout {ARCHIVE_TIMEOUT_SECONDS} s): {lag} s",
                f"cluster {self.cluster_megabytes:.0f} MB; base backup {self.backup_seconds:.1f}"
                f" s; WAL segments archived {self.wal_segments}; restore to the target time "
                f"{self.restore_seconds:.1f} s",
            ]
        )


async def _archive_lag(url: str) -> float:
    """Seconds from a commit until the segment holding it is in the archive."""
    connection = await asyncpg.connect(url)
    try:
        began = time.monotonic()
        deadline = began + 60
        lsn = await connection.fetchval(
            "select pg_logical_emit_message(false, 'backup-test', 'commit')"
        )
        segment = await connection.fetchval("select pg_walfile_name($1)", lsn)
        while True:
            archived = await connection.fetchval("select last_archived_wal from pg_stat_archiver")
            if archived is not None and archived >= segment:
                return time.monotonic() - began
            if time.monotonic() > deadline:
                failed = await connection.fetchval("select failed_count from pg_stat_archiver")
                raise RuntimeError(f"segment {segment} not archived in 60 s ({failed} failures)")
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def _switch_and_archive(url: str) -> None:
    """Close the current segment and wait until it is archived: everything written so far is in
    the object store."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("select pg_logical_emit_message(false, 'backup-test', 'end')")
        segment = await connection.fetchval("select pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + 60
        archived = "select coalesce(last_archived_wal, '') from pg_stat_archiver"
        while await connection.fetchval(archived) < segment:
            assert time.monotonic() < deadline, f"segment {segment} never archived"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def _until_promoted(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            connection = await asyncpg.connect(url, timeout=2)
            try:
                if not await connection.fetchval("select pg_is_in_recovery()"):
                    return
            finally:
                await connection.close()
        assert time.monotonic() < deadline, "the restored server never finished recovery"
        await asyncio.sleep(0.1)


def _bulk(server_url: str, patients: int, consultations: int) -> None:
    """The bench's data set (``bench.run``'s own seeding), in a database of its own on the same
    server: what the restore then carries besides the test's database."""
    from bench.run import prepare_database

    asyncio.run(prepare_database(server_url, patients, 200, consultations, "https://idp.bench"))


async def _load_with_backup(
    load: Load, store: ObjectStore, primary: Cluster, seconds: float
) -> tuple[float, float, datetime, list[float]]:
    """Load for ``seconds``: a base backup early on, the target time two thirds through.
    Returns (backup seconds, monotonic end of the backup, the target, archive lags)."""
    async with httpx.AsyncClient(timeout=30) as http:
        tasks = await load.run(http)
        try:
            await asyncio.sleep(seconds / 6)
            began = time.monotonic()
            await asyncio.to_thread(
                barman,
                "barman-cloud-backup",
                store,
                "--gzip",
                "--encryption",
                "AES256",
                "--immediate-checkpoint",
                "--host",
                "127.0.0.1",
                "--port",
                str(primary.port),
                "--user",
                "postgres",
                f"s3://{BUCKET}/",
                SERVER_NAME,
            )
            backed_up = time.monotonic()
            lags = [await _archive_lag(primary.url())]
            remaining = max(seconds * 2 / 3 - (time.monotonic() - began), 1.0)
            await asyncio.sleep(remaining)
            target = datetime.now(UTC)
            await asyncio.sleep(seconds / 3)
            lags.append(await _archive_lag(primary.url()))
        finally:
            load.stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    return backed_up - began, backed_up, target, lags


def run_scenario(seconds: float = 9.0, patients: int = 0, consultations: int = 0) -> Report:
    root = Path(tempfile.mkdtemp(prefix="gateway-backup-"))
    root.chmod(0o755)
    primary = Cluster(owned_by_postgres(root / "primary"))
    restored = Cluster(owned_by_postgres(root / "restored"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        store = ObjectStore(root)
        stack.callback(store.stop)
        stack.callback(primary.stop)
        primary.initdb()
        configure(primary, archiving(store))
        primary.start()
        env, database = prepared_database(primary, root, ISSUER)
        if patients:
            _bulk(primary.url(), patients, consultations)
        variables = {
            "GATEWAY_RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
            "GATEWAY_RATE_LIMIT_FIELD_CALLS_PER_MINUTE": "1000000",
        }
        _, url = stack.enter_context(gateway_serve(env, **variables))
        load = Load(env, [url])
        offset = time.time() - time.monotonic()  # monotonic -> wall clock, same machine
        backup_seconds, backed_up, target, lags = asyncio.run(
            _load_with_backup(load, store, primary, seconds)
        )
        asyncio.run(_switch_and_archive(primary.url()))
        size = asyncio.run(_size(primary.url(database)))
        segments = sum(1 for key in store.objects() if "/wals/" in key)

        # The disaster: the primary and its data are gone; only the object store is left.
        primary.kill()
        shutil.rmtree(primary.data)
        began = time.monotonic()
        barman(
            "barman-cloud-restore",
            store,
            f"s3://{BUCKET}/",
            SERVER_NAME,
            "latest",
            str(restored.data),
            as_postgres=True,
        )
        configure(
            restored,
            {
                "archive_mode": "off",
                "restore_command": barman_command("barman-cloud-wal-restore", store) + " %f %p",
                "recovery_target_time": target.isoformat(),
                "recovery_target_action": "promote",
            },
        )
        (restored.data / "recovery.signal").touch()
        if os.geteuid() == 0:
            shutil.chown(restored.data / "recovery.signal", "postgres", "postgres")
        stack.callback(restored.stop)
        restored.start()
        asyncio.run(_until_promoted(restored.url(), 600))
        restore_seconds = time.monotonic() - began

        def wall(instant: float) -> datetime:
            return datetime.fromtimestamp(instant + offset, UTC)

        answered = [o for o in load.outcomes if o.status == 200 and o.events]
        before = [o for o in answered if wall(o.ended) < target]
        after = [o for o in load.outcomes if wall(o.started) > target]
        recorded = asyncio.run(
            recorded_events(restored.url(database), [o.request_id for o in load.outcomes])
        )
        missing = [
            o.request_id for o in before if not o.events <= recorded.get(o.request_id, set())
        ]
        present = [o.request_id for o in after if o.request_id in recorded]
        late = asyncio.run(_events_after(restored.url(database), target))
        verify = run_gateway("audit", "verify", "--full", "--database-url", restored.url(database))
        return Report(
            answered_before=len(before),
            sent_after=len(after),
            after_backup_before_target=sum(1 for o in before if o.started > backed_up),
            missing=missing,
            present_after=present,
            events_after_target=late,
            foreign=[o.problem for o in load.outcomes if o.problem and o.status == 200],
            verify=verify,
            archive_lag_seconds=lags,
            backup_seconds=backup_seconds,
            restore_seconds=restore_seconds,
            cluster_megabytes=size,
            wal_segments=segments,
        )
    raise AssertionError("unreachable")


async def _size(url: str) -> float:
    connection = await asyncpg.connect(url)
    try:
        total = await connection.fetchval("select sum(pg_database_size(oid)) from pg_database")
        return total / 2**20
    finally:
        await connection.close()


async def _events_after(url: str, target: datetime) -> int:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(
            "select count(*) from data.access_events where occurred_at > $1", target
        )
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=9.0, help="length of the load")
    parser.add_argument("--patients", type=int, default=0, help="bulk data: patients")
    parser.add_argument("--consultations", type=int, default=50, help="bulk: per patient")
    args = parser.parse_args(argv)
    print(run_scenario(args.seconds, args.patients, args.consultations if args.patients else 0))


if __name__ == "__main__":
    main()
