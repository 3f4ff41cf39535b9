"""PostgreSQL servers and what stands between them, as real processes on one machine: a
server run as the ``postgres`` system user, a TCP relay a standby reaches its primary through
(which can hold or cut what passes), and PgBouncer in transaction mode."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

PG_BIN = Path(shutil.which("pg_ctl") or "/usr/lib/postgresql/15/bin/pg_ctl").resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def owned_by_postgres(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


def run_as_postgres(command: list[str]) -> str:
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
    port: int = dataclasses.field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.directory / "pg"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        run_as_postgres([*initdb, "--encoding=UTF8", "--locale=C", "--no-instructions"])

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
        run_as_postgres(
            [pg_ctl, "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start"]
        )

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
        run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "promote"])

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
        self.directory = owned_by_postgres(directory)
        self.database = database
        self.port = free_port()
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
