"""An embedded PostgreSQL for development and tests, everything in one folder.

It runs the system's binaries when ``initdb`` is on PATH (as the ``postgres`` system user when
we are root, since initdb refuses root), else the ``pgserver`` wheel.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from gateway.data.migrate import apply_migrations, hand_over
from gateway.errors import ConfigurationError

if TYPE_CHECKING:
    from pgserver import PostgresServer

__all__ = ["OWNER", "EmbeddedPostgres", "provision", "with_credentials"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``directory``: ``start()`` returns a superuser URL."""

    def __init__(self, directory: Path, *, fast: bool = False) -> None:
        self.directory = directory.resolve()
        self.data = self.directory / "pg"
        self.log = self.directory / "pg.log"
        self.fast = fast
        self.url: str | None = None
        self._pgserver: PostgresServer | None = None

    def _as_postgres(self, command: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return command

    def _run(self, command: list[str]) -> None:
        completed = subprocess.run(  # noqa: S603
            self._as_postgres(command), capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            detail = (completed.stderr or completed.stdout).strip().splitlines()
            raise ConfigurationError(
                f"{command[0]} failed: {detail[-1] if detail else completed.returncode}"
            )

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        if shutil.which("initdb") and shutil.which("pg_ctl"):
            self.url = self._start_system()
        else:
            self.url = self._start_pgserver()
        return self.url

    def _start_system(self) -> str:
        if os.geteuid() == 0:
            self.directory.chmod(self.directory.stat().st_mode | 0o011)
            self.data.mkdir(exist_ok=True)
            shutil.chown(self.data, "postgres", "postgres")
            self.data.chmod(0o700)
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
            probe = subprocess.run(  # noqa: S603
                ["runuser", "-u", "postgres", "--", "test", "-w", str(self.data)],  # noqa: S607
                check=False,
            )
            if probe.returncode != 0:
                raise ConfigurationError(
                    f"--data-dir: the postgres system user cannot reach {self.data}; "
                    "choose a folder outside /root (e.g. under /tmp or /srv)"
                )
        if not (self.data / "PG_VERSION").exists():
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ]
            )
        self._stop_if_running()  # left running by a process that was killed (kill -9)
        port = _free_port()
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"]
        )
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _stop_if_running(self) -> None:
        """Stop the server on this folder if one runs: ours, or one left by a process that was
        killed; the caller holds the folder (``gateway.dev.instance.claim``), so nobody else
        uses it."""
        if not (self.data / "postmaster.pid").exists():
            return
        status = subprocess.run(  # noqa: S603
            self._as_postgres(["pg_ctl", "-D", str(self.data), "status"]),
            capture_output=True,
            check=False,
        )
        if status.returncode == 0:
            self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def _start_pgserver(self) -> str:
        try:
            import pgserver
        except ImportError:
            raise ConfigurationError(
                "no PostgreSQL found: install PostgreSQL (initdb, pg_ctl on PATH) or "
                "`pip install consultation-gateway[embedded]`"
            ) from None
        server = pgserver.get_server(str(self.data), cleanup_mode="stop")
        self._pgserver = server
        return server.get_uri()

    def stop(self) -> None:
        if self._pgserver is not None:
            self._pgserver.cleanup()
            self._pgserver = None
        elif shutil.which("pg_ctl"):
            self._stop_if_running()
        self.url = None


def with_credentials(url: str, user: str, password: str, database: str | None = None) -> str:
    """``url`` with another user, password and optionally database."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    path = f"/{database}" if database else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


OWNER = "gateway_owner"

# The roles the prod overlay's Cluster declares (managed.roles), made the same way here: the
# owner is neither SUPERUSER, BYPASSRLS nor CREATEROLE (on PostgreSQL 15 a CREATEROLE role can
# grant itself pg_execute_server_program, a shell as the server's user), so the roles the
# migrations grant to must exist before it migrates. Safe to run by several sessions at once.
_ROLES = f"""
do $$
begin
    begin
        create role {OWNER} login nosuperuser nobypassrls nocreaterole nocreatedb;
    exception when duplicate_object or unique_violation then null;
    end;
    begin
        create role gateway_app nologin nosuperuser nobypassrls nocreaterole nocreatedb noinherit;
    exception when duplicate_object or unique_violation then null;
    end;
    begin
        create role gateway_audit_reader nologin nosuperuser nobypassrls nocreaterole nocreatedb;
    exception when duplicate_object or unique_violation then null;
    end;
    if exists (select from pg_roles where rolname = '{OWNER}'
               and (rolsuper or rolbypassrls or rolcreaterole)) then
        alter role {OWNER} nosuperuser nobypassrls nocreaterole;
    end if;
end
$$
"""


async def provision(admin_url: str, app_password: str) -> str:
    """Make the roles, hand the database at ``admin_url`` (a superuser's URL) to
    ``gateway_owner``, migrate it as that role, and let ``gateway_app`` log in with
    ``app_password``; return the application's URL.

    ``gateway_owner`` owns the schema as in production (k8s/overlays/prod), so every test and
    ``gateway dev`` run it as production does: the functions that run as their owner have no
    superuser's powers there either. A development database a superuser migrated before is
    handed over on the way (``hand_over`` changes nothing once the owner has everything)."""
    database = urlsplit(admin_url).path.lstrip("/")
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(_ROLES)
        await connection.execute(f'alter database "{database}" owner to {OWNER}')
        if await connection.fetchval("select true from pg_namespace where nspname = 'data'"):
            await hand_over(connection, OWNER)
        await apply_migrations(connection)  # as the database's owner (SET ROLE)
        statement = await connection.fetchval(
            "select format('alter role gateway_app login password %L', $1::text)", app_password
        )
        await connection.execute(statement)
    finally:
        await connection.close()
    return with_credentials(admin_url, "gateway_app", app_password)
