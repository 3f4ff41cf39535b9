"""Databases as the last release left them: its migrations, as released (at 73e94ce, before
their functions, triggers, policies and privileges moved to src/gateway/data/sql/), applied by
hand the way that release's ``gateway migrate`` did, up to a version, for the upgrade tests.

The texts are history, not definitions: tests/data/migrations-as-released.tar.gz holds them
compressed; their checksums are those src/gateway/data/migrations/released.sha256 lists."""

from __future__ import annotations

import tarfile
from functools import cache
from pathlib import Path

import asyncpg

from gateway.data.migrate import Migration

__all__ = ["migrate_as_released", "released_migrations"]

ARCHIVE = Path(__file__).parents[1] / "data" / "migrations-as-released.tar.gz"


@cache
def released_migrations() -> tuple[Migration, ...]:
    with tarfile.open(ARCHIVE) as archive:
        found = [
            Migration(member.name.removesuffix(".sql"), archive.extractfile(member).read().decode())
            for member in archive.getmembers()
            if member.isfile() and member.name.endswith(".sql")
        ]
    return tuple(sorted(found, key=lambda migration: migration.version))


async def migrate_as_released(connection: asyncpg.Connection, before: str | None = None) -> None:
    """Apply the released migrations whose version sorts before ``before`` (all of them without
    it), recording each with its checksum, on a database that has none."""
    await connection.execute(
        "create table public.schema_migrations (version text primary key, "
        "checksum text not null, applied_at timestamptz not null default now())"
    )
    for migration in released_migrations():
        if before is not None and migration.version >= before:
            break
        await connection.execute(migration.sql)
        await connection.execute(
            "insert into schema_migrations (version, checksum) values ($1, $2)",
            migration.version,
            migration.checksum,
        )
