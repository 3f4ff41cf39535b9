"""The test database as a superuser reads it, apart from the gateway."""

from __future__ import annotations

import asyncio
from typing import Any


def connected(url: str, work: Any) -> Any:
    """Run ``work(connection)`` on a connection to ``url``, closed afterwards."""
    import asyncpg

    async def run() -> Any:
        connection = await asyncpg.connect(url)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


def as_admin(env: Any, work: Any) -> Any:
    """Run ``work(connection)`` on a superuser connection to the test database."""
    return connected(env.admin_url, work)


# SQL: the event's objects hold the object whose id is $2 (grouped as {"type", "fields", "ids"},
# or, before grouping, one {"type", "id", "fields"} per object).
HOLDS_OBJECT = (
    "(data.event_objects(access_events) @> "
    "jsonb_build_array(jsonb_build_object('ids', jsonb_build_array($2::text)))"
    " or data.event_objects(access_events) @> "
    "jsonb_build_array(jsonb_build_object('id', $2::text)))"
)
