"""Migrations apply once, in order, under a lock; a changed applied migration is refused."""

from __future__ import annotations

import pytest

from gateway.data.migrate import apply_migrations, available_migrations
from gateway.errors import ConfigurationError
from tests.support.database import as_admin

_with_admin = as_admin


def test_migrating_an_up_to_date_database_applies_nothing(env):
    assert _with_admin(env, apply_migrations) == []


def test_every_available_migration_is_recorded_with_its_checksum(env):
    rows = _with_admin(
        env, lambda c: c.fetch("select version, checksum from schema_migrations order by version")
    )
    assert [(r["version"], r["checksum"]) for r in rows] == [
        (m.version, m.checksum) for m in available_migrations()
    ]


def test_a_migration_changed_after_it_was_applied_is_refused(env):
    async def tamper_and_migrate(connection):
        version = available_migrations()[0].version
        original = await connection.fetchval(
            "select checksum from schema_migrations where version = $1", version
        )
        await connection.execute(
            "update schema_migrations set checksum = 'x' where version = $1", version
        )
        try:
            await apply_migrations(connection)
        finally:
            await connection.execute(
                "update schema_migrations set checksum = $2 where version = $1", version, original
            )

    with pytest.raises(ConfigurationError, match="was changed after it was applied"):
        _with_admin(env, tamper_and_migrate)
