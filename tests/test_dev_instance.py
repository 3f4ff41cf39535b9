"""A development instance as a user runs it: ``gateway dev`` in its own process, stopped with
real signals; every database command reaching it with ``--data-dir``, running or stopped; no
PostgreSQL left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import run_gateway as gateway

ROOT = Path(__file__).resolve().parents[1]


def _environment() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "DATABASE_URL"
    }


class Dev:
    """One ``gateway dev --data-dir DIR --port 0`` process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "dev",
                "--data-dir",
                str(directory),
                "--port",
                "0",
            ],
            cwd=ROOT,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.postmaster: int | None = None

    @property
    def instance(self) -> dict:
        return json.loads((self.directory / "instance.json").read_text())

    def wait_until(self, predicate, what: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            assert self.process.poll() is None, f"gateway dev ended: {self.process.stdout.read()}"
            assert time.monotonic() < deadline, f"gateway dev: {what} not within {seconds} s"
            time.sleep(0.1)

    def wait_ready(self) -> dict:
        def published() -> bool:  # by this process (a killed one's may still be there)
            try:
                return self.instance["pid"] == self.process.pid
            except (OSError, ValueError):
                return False

        self.wait_until(published, "instance.json")
        instance = self.instance

        def ready() -> bool:
            try:
                return httpx.get(instance["readyz_url"], timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_until(ready, "ready")
        self.postmaster = _postmaster(self.directory)
        return instance

    def stop(self, number: signal.Signals = signal.SIGTERM) -> str:
        self.process.send_signal(number)
        output, _ = self.process.communicate(timeout=60)
        return output


def _postmaster(directory: Path) -> int:
    return int((directory / "pg" / "postmaster.pid").read_text().splitlines()[0])


def _postgres_processes(directory: Path) -> list[str]:
    """Processes running PostgreSQL on ``directory`` (the postmaster names its data folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "postgres" in command and str(directory / "pg") in command:
            found.append(f"{entry.name}: {command}")
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_no_postgres_left(dev: Dev) -> None:
    assert _postgres_processes(dev.directory) == []
    assert dev.postmaster is None or not _alive(dev.postmaster)
    assert not (dev.directory / "pg" / "postmaster.pid").exists()
    assert not (dev.directory / "instance.json").exists()


@pytest.fixture
def folder() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="gateway-dev-instance-"))
    yield directory
    for line in _postgres_processes(directory):  # never leave one behind, even on failure
        os.kill(int(line.split(":")[0]), signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)


def assert_one_line_failure(result, text: str) -> None:
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert text in result.stderr, result.stderr


def test_every_database_command_reaches_a_running_instance_through_its_folder(folder):
    dev = Dev(folder)
    try:
        instance = dev.wait_ready()
        assert stat.S_IMODE((folder / "instance.json").stat().st_mode) == 0o600
        assert instance["pid"] == dev.process.pid
        base = instance["base_url"]
        assert instance["graphql_url"] == f"{base}/graphql"
        assert instance["database_url"].startswith("postgresql://gateway_app:")
        assert instance["admin_database_url"].startswith("postgresql://postgres")
        assert instance["admin_database_url"].endswith("/gateway")

        principals = json.loads((folder / "principals.json").read_text())
        patient = next(p for p in principals if p["role"] == "patient")
        token = gateway("token", "--data-dir", str(folder), "--subject", patient["subject"])
        assert token.returncode == 0, token.stderr
        query = "{ me { patient { id } } consultations(first: 2) { edges { node { id } } } }"
        response = httpx.post(
            instance["graphql_url"],
            headers={"authorization": f"Bearer {token.stdout.strip()}"},
            json={"query": query},
        )
        assert response.status_code == 200
        assert response.json()["data"]["me"]["patient"]["id"] == patient["id"]

        verify = gateway("audit", "verify", "--data-dir", str(folder))
        assert verify.returncode == 0, verify.stderr
        assert verify.stdout.startswith("audit chain intact:")
        assert not verify.stdout.startswith("audit chain intact: 0 events")
        export = gateway("audit", "export", "--data-dir", str(folder), "--since", "2000-01-01")
        assert export.returncode == 0, export.stderr
        events = [json.loads(line) for line in export.stdout.splitlines()]
        assert events and all(event["resourceType"] == "AuditEvent" for event in events)
        migrate = gateway("migrate", "--data-dir", str(folder))
        assert (migrate.returncode, migrate.stdout) == (0, "database is up to date\n")
        seed = gateway("seed", "--data-dir", str(folder))
        assert_one_line_failure(seed, "already holds patients")
        document = folder / "query.graphql"
        document.write_text(query)
        explain = gateway(
            "explain", "--data-dir", str(folder), "--subject", patient["subject"],
            "--query", str(document),
        )  # fmt: skip
        assert explain.returncode == 0, explain.stderr
        assert "me.patient.id" in explain.stdout and "allowed" in explain.stdout

        # The attack on the folder: a second instance on it. Refused, and the first one serves on.
        second = gateway("dev", "--data-dir", str(folder), "--port", "0")
        assert_one_line_failure(
            second, f"--data-dir {folder}: in use by `gateway dev` (pid {dev.process.pid})"
        )
        assert base in second.stderr
        assert httpx.get(instance["readyz_url"]).status_code == 200
    finally:
        output = dev.stop(signal.SIGTERM)
    assert dev.process.returncode == 0, output
    assert "stopped (SIGTERM)" in output
    assert_no_postgres_left(dev)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_stops_postgres_with_the_gateway(folder, number):
    dev = Dev(folder)
    try:
        dev.wait_ready()
    finally:
        output = dev.stop(number)
    assert dev.process.returncode == 0, output
    assert f"stopped ({number.name})" in output
    assert "Finished server process" in output  # uvicorn's graceful shutdown ran first
    assert_no_postgres_left(dev)


@pytest.mark.parametrize("moment", ["initdb", "postgres"])
def test_a_signal_while_starting_stops_postgres_too(folder, moment):
    """SIGTERM while initdb makes the cluster (the signal waits until it is whole), or as soon
    as PostgreSQL runs, while the database is being prepared: no process survives, and the
    folder starts again."""
    dev = Dev(folder)
    marker = folder / "pg" / ("PG_VERSION" if moment == "initdb" else "postmaster.opts")
    try:
        dev.wait_until(marker.exists, moment)
    finally:
        output = dev.stop(signal.SIGTERM)
    assert dev.process.returncode == 0, output
    assert "stopped (SIGTERM)" in output
    assert_no_postgres_left(dev)
    again = Dev(folder)
    try:
        again.wait_ready()
    finally:
        again.stop()
    assert again.process.returncode == 0
    assert_no_postgres_left(again)


def test_a_stopped_or_killed_instance_is_started_for_the_command_and_stopped_after(folder):
    dev = Dev(folder)
    dev.wait_ready()
    dev.stop()
    assert_no_postgres_left(dev)

    # Stopped: the command starts its PostgreSQL, uses it, and stops it.
    verify = gateway("audit", "verify", "--data-dir", str(folder))
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith("audit chain intact:")
    assert_no_postgres_left(dev)

    # Killed (kill -9: no clean-up can run): its PostgreSQL is orphaned, holding the folder.
    killed = Dev(folder)
    killed.wait_ready()
    killed.process.kill()
    killed.process.communicate(timeout=30)
    assert _postgres_processes(folder)
    # The next user of the folder stops the orphan first, then works as usual.
    again = Dev(folder)
    try:
        instance = again.wait_ready()
        assert again.postmaster != killed.postmaster
        assert not _alive(killed.postmaster)
        assert httpx.get(instance["healthz_url"]).status_code == 200
    finally:
        again.stop()
    assert again.process.returncode == 0
    assert_no_postgres_left(again)


def test_data_dir_mistakes_are_one_line(tmp_path):
    missing = gateway("audit", "verify", "--data-dir", str(tmp_path))
    assert_one_line_failure(missing, f"--data-dir {tmp_path}: no development instance here")
    both = gateway("migrate", "--data-dir", str(tmp_path), "--database-url", "postgresql://x")
    assert_one_line_failure(both, "give --database-url or --data-dir, not both")
    neither = gateway("explain", "--subject", "s", "--query", "-")
    assert_one_line_failure(neither, "Missing option '--database-url' (env DATABASE_URL)")


def test_a_killed_instances_file_is_never_taken_for_the_running_one(tmp_path):
    """The folder is held (here by this process, as by a new `gateway dev` that has not yet
    published), and a killed instance's instance.json is still there: a command must not take
    the dead instance's URLs, whose port may now be anyone's."""
    from gateway.dev.instance import claim, reach
    from gateway.errors import ConfigurationError

    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "PG_VERSION").write_text("15\n")
    held = claim(tmp_path, "gateway dev")
    try:
        stale = {"pid": 999999, "admin_database_url": "postgresql://postgres@127.0.0.1:1/gateway"}
        (tmp_path / "instance.json").write_text(json.dumps(stale))
        in_use = pytest.raises(ConfigurationError, match=r"in use by `gateway dev` \(pid \d+\)")
        with in_use, reach(tmp_path, "gateway migrate", "admin"):
            pass
    finally:
        held.release()


def test_instance_json_replaces_a_planted_link_and_is_the_owners_alone(tmp_path):
    """Another local user plants instance.json as a link to a file of theirs: the URLs and the
    password must not land in it."""
    from gateway.dev.instance import InstanceUrls, claim

    victim = tmp_path / "theirs"
    victim.write_text("")
    victim.chmod(0o666)
    folder = tmp_path / "dev"
    folder.mkdir()
    (folder / "instance.json").symlink_to(victim)
    held = claim(folder, "gateway dev")
    try:
        (folder / "instance.json").symlink_to(victim)
        held.publish("http://127.0.0.1:1", InstanceUrls("admin-url", "app-url", "secret"))
        written = folder / "instance.json"
        assert not written.is_symlink()
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert json.loads(written.read_text())["database_url"] == "app-url"
        assert victim.read_text() == ""
    finally:
        held.release()
