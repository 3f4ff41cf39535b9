"""The database URL of the administrative commands (migrate, seed, audit): a role that owns the
schema, given as ``--database-url`` or read from ``--database-url-file`` (a mounted Secret)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

__all__ = ["admin_url_option"]


def _admin_url_from_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        ctx.meta["admin_url_file"] = Path(value).read_text().strip()
    except OSError as exc:
        raise click.BadParameter(f"cannot read ({exc.strerror})") from None


def _resolve_admin_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    from_file = ctx.meta.get("admin_url_file")
    if value is not None and from_file is not None:
        raise click.UsageError("give --database-url or --database-url-file, not both")
    url = value if value is not None else from_file
    if not url:
        raise click.UsageError(
            "Missing option '--database-url' (env GATEWAY_ADMIN_DATABASE_URL) or "
            "'--database-url-file' (env GATEWAY_ADMIN_DATABASE_URL_FILE)"
        )
    return url


def admin_url_option(command: Any) -> Any:
    """The admin URL, from ``--database-url`` or from a file (a mounted Secret)."""
    command = click.option(
        "--database-url",
        envvar="GATEWAY_ADMIN_DATABASE_URL",
        callback=_resolve_admin_url,
        help="URL of a role that owns the schema (env GATEWAY_ADMIN_DATABASE_URL).",
    )(command)
    return click.option(
        "--database-url-file",
        envvar="GATEWAY_ADMIN_DATABASE_URL_FILE",
        is_eager=True,
        expose_value=False,
        callback=_admin_url_from_file,
        type=click.Path(dir_okay=False),
        help="A file holding that URL (env GATEWAY_ADMIN_DATABASE_URL_FILE).",
    )(command)
