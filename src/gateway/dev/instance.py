"""A development instance's folder, as every command sees it.

``gateway dev --data-dir DIR`` holds an exclusive lock on ``DIR/instance.lock`` for as long as it
runs (the kernel releases it when the process ends, however it ends) and writes
``DIR/instance.json`` (mode 0600: it holds the database URLs with their passwords) once it
serves. Other commands given ``--data-dir DIR`` reach the instance through :func:`reach`:

- running: the URLs in ``instance.json``;
- stopped: its PostgreSQL is started for the command, under the same lock, and stopped after
  (the port is chosen at each start, so a stopped instance has no URL to hand out);
- a PostgreSQL left running by a ``gateway dev`` that was killed (``kill -9``) is stopped first
  (see :meth:`gateway.dev.embedded.EmbeddedPostgres.start`): holding the lock proves nobody else
  uses it.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from gateway.dev.embedded import EmbeddedPostgres, with_credentials
from gateway.errors import ConfigurationError

__all__ = ["DATABASE", "Claim", "InstanceUrls", "claim", "reach"]

DATABASE = "gateway"
"""The development instance's database (the cluster's superuser is ``postgres``)."""

_LOCK = "instance.lock"
_INSTANCE = "instance.json"


@dataclass(frozen=True, slots=True)
class InstanceUrls:
    admin: str
    """``postgres`` (the cluster's superuser) on the ``gateway`` database: migrate, seed, audit."""
    app: str
    """``gateway_app`` (what the gateway connects as): explain."""
    app_password: str


class Claim:
    """This process's exclusive hold on a development folder, released on :meth:`release` or
    when the process ends."""

    def __init__(self, directory: Path, descriptor: int) -> None:
        self.directory = directory
        self._descriptor = descriptor

    @property
    def instance_file(self) -> Path:
        return self.directory / _INSTANCE

    def urls(self, server_url: str) -> InstanceUrls:
        """The instance's URLs, given its cluster's superuser URL (made when its PostgreSQL
        starts); the application role's password is made once and kept in the folder."""
        password_file = self.directory / "app-password"
        if not password_file.exists():
            _write_private(password_file, secrets.token_urlsafe(24))
        admin = with_credentials(server_url, "postgres", "", database=DATABASE)
        app = with_credentials(admin, "gateway_app", password_file.read_text().strip())
        return InstanceUrls(admin, app, password_file.read_text().strip())

    def publish(self, base_url: str, urls: InstanceUrls) -> None:
        """Write ``instance.json``: what this running instance serves and uses."""
        description = {
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_dir": str(self.directory),
            "base_url": base_url,
            "graphql_url": f"{base_url}/graphql",
            "healthz_url": f"{base_url}/healthz",
            "readyz_url": f"{base_url}/readyz",
            "metrics_url": f"{base_url}/metrics",
            "database_url": urls.app,
            "admin_database_url": urls.admin,
            "principals_file": str(self.directory / "principals.json"),
        }
        _write_private(self.instance_file, json.dumps(description, indent=2) + "\n")

    def release(self) -> None:
        self.instance_file.unlink(missing_ok=True)
        os.close(self._descriptor)


def claim(directory: Path, command: str) -> Claim:
    """Take ``directory`` for this process, or say clearly who has it."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_json(directory / _LOCK)
        os.close(descriptor)
        raise ConfigurationError(_in_use(directory, holder)) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps({"pid": os.getpid(), "command": command}).encode(), 0)
    (directory / _INSTANCE).unlink(missing_ok=True)  # left by an instance that was killed
    return Claim(directory, descriptor)


def _in_use(directory: Path, holder: dict[str, Any]) -> str:
    who = f"`{holder.get('command', 'gateway')}` (pid {holder.get('pid', '?')})"
    instance = _read_json(directory / _INSTANCE)
    where = f", serving {instance['base_url']}" if "base_url" in instance else ""
    return (
        f"--data-dir {directory}: in use by {who}{where}; stop it (or use its instance) "
        "rather than starting another on the same folder"
    )


@contextmanager
def reach(directory: Path, command: str, role: Literal["admin", "app"]) -> Iterator[str]:
    """The URL of the development instance in ``directory`` for ``role``, for as long as the
    block runs."""
    directory = directory.resolve()
    if not (directory / "pg" / "PG_VERSION").exists():
        raise ConfigurationError(
            f"--data-dir {directory}: no development instance here "
            "(start one with `gateway dev --data-dir DIR`)"
        )
    try:
        held = claim(directory, command)
    except ConfigurationError:
        instance = _read_json(directory / _INSTANCE)
        holder = _read_json(directory / _LOCK)
        key = "admin_database_url" if role == "admin" else "database_url"
        if key not in instance or instance.get("pid") != holder.get("pid"):
            raise  # held, but not (yet) serving, or a killed instance's file: say who holds it
        yield instance[key]
        return
    cluster = EmbeddedPostgres(directory)
    try:
        urls = held.urls(cluster.start())
        yield urls.admin if role == "admin" else urls.app
    finally:
        cluster.stop()
        held.release()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, replacing it whole."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    # A new file of our own, never one planted under that name (nor a link to one).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(temporary, flags, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
