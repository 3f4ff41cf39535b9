"""Versioned SQL migrations: ``migrations/NNNN_name.sql``, applied in order, each in its own
transaction, under an advisory lock so that concurrent runners (several pods starting) apply each
one once. An applied file whose text has changed is refused, not silently skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

from gateway.errors import ConfigurationError

__all__ = ["Migration", "apply_migrations", "available_migrations"]

_LOCK_KEY = 0x6761746577617931  # "gateway1"

_BOOKKEEPING = """
create table if not exists public.schema_migrations (
    version text primary key,
    checksum text not null,
    applied_at timestamptz not null default now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    folder = resources.files("gateway.data") / "migrations"
    found = [
        Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda migration: migration.version)


async def apply_migrations(connection: asyncpg.Connection) -> list[str]:
    """Apply every pending migration; return the versions applied now."""
    applied_now = []
    await connection.execute("select pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await connection.execute(_BOOKKEEPING)
        done = {
            row["version"]: row["checksum"]
            for row in await connection.fetch("select version, checksum from schema_migrations")
        }
        for migration in available_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise ConfigurationError(
                        f"migration {migration.version} was changed after it was applied"
                    )
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "insert into schema_migrations (version, checksum) values ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
            applied_now.append(migration.version)
    finally:
        await connection.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
