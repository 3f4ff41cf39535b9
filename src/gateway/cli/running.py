"""How every command runs and fails: one message and exit 2, never a traceback.

A failure a user can cause (bad arguments, unreachable database, missing settings) ends in one
message on stderr (one line, or one line per missing or invalid setting) and exit 2."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, NoReturn

import asyncpg
import click

from gateway.errors import ConfigurationError

__all__ = ["connect", "fail", "run"]


def fail(message: str) -> NoReturn:
    click.echo(f"gateway: {message}", err=True)
    sys.exit(2)


def run(coroutine: Any) -> Any:
    try:
        return asyncio.run(coroutine)
    except ConfigurationError as exc:
        fail(exc.message)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        fail(f"database: {exc}")


async def connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise ConfigurationError(f"cannot connect to the database ({exc})") from None
