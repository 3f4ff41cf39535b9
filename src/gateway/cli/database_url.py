"""Where a command finds its database: a URL, a file holding one, or a development instance.

Those are ``--database-url``, ``--database-url-file`` (a mounted Secret) and ``--data-dir``.

The administrative commands (migrate, seed, audit) need a role that owns the schema
(``GATEWAY_ADMIN_DATABASE_URL``); ``explain`` needs the application role (``DATABASE_URL``).
``--data-dir DIR`` resolves either from the development instance in DIR, running or stopped
(``gateway.dev.instance.reach``); it wins over a URL from the environment, and refuses a URL
given on the command line too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click
from click.core import ParameterSource

__all__ = ["admin_url_option", "app_url_option"]

_ENVIRONMENT = {"admin": "GATEWAY_ADMIN_DATABASE_URL", "app": "DATABASE_URL"}
_HELP = {
    "admin": "URL of a role that owns the schema",
    "app": "URL of the application role (gateway_app's login)",
}


def _given_on_command_line(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.meta[key] = (value, _given_on_command_line(ctx, param.name or ""))

    return callback


def _command_name(ctx: click.Context) -> str:
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["gateway", *reversed(names)])


def _resolver(role: Literal["admin", "app"]) -> Callable[..., str]:
    def resolve(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
        from gateway.dev.instance import reach

        url_file = ctx.meta.get("database_url_file")
        data_dir = ctx.meta.get("data_dir")
        url_given = value is not None and _given_on_command_line(ctx, "database_url")
        explicit = [
            name
            for name, given in (
                ("--database-url", url_given),
                ("--database-url-file", url_file is not None and url_file[1]),
                ("--data-dir", data_dir is not None),
            )
            if given
        ]
        if len(explicit) > 1:
            several = "not both" if len(explicit) == 2 else "not several"
            raise click.UsageError(f"give {' or '.join(explicit)}, {several}")
        if data_dir is not None:
            return ctx.with_resource(reach(data_dir[0], _command_name(ctx), role))
        if value is not None and url_file is not None and not explicit:
            raise click.UsageError(
                "GATEWAY_ADMIN_DATABASE_URL and GATEWAY_ADMIN_DATABASE_URL_FILE are both set; "
                "unset one"
            )
        if url_file is not None and (value is None or url_file[1]):
            try:
                value = Path(url_file[0]).read_text().strip()
            except OSError as exc:
                raise click.BadParameter(
                    f"cannot read ({exc.strerror})", param_hint="'--database-url-file'"
                ) from None
        if not value:
            sources = f"'--database-url' (env {_ENVIRONMENT[role]})"
            if role == "admin":
                sources += ", '--database-url-file' (env GATEWAY_ADMIN_DATABASE_URL_FILE)"
            raise click.UsageError(f"Missing option {sources} or '--data-dir'")
        return value

    return resolve


def _database_url_options(role: Literal["admin", "app"]) -> Callable[[Any], Any]:
    def decorate(command: Any) -> Any:
        command = click.option(
            "--database-url",
            envvar=_ENVIRONMENT[role],
            callback=_resolver(role),
            help=f"{_HELP[role]} (env {_ENVIRONMENT[role]}).",
        )(command)
        if role == "admin":
            command = click.option(
                "--database-url-file",
                envvar="GATEWAY_ADMIN_DATABASE_URL_FILE",
                is_eager=True,
                expose_value=False,
                callback=_remember("database_url_file"),
                type=click.Path(dir_okay=False),
                help="A file holding that URL (env GATEWAY_ADMIN_DATABASE_URL_FILE).",
            )(command)
        return click.option(
            "--data-dir",
            is_eager=True,
            expose_value=False,
            callback=_remember("data_dir"),
            type=click.Path(file_okay=False, path_type=Path),
            help="A development instance's folder (`gateway dev --data-dir`), running or "
            "stopped, instead of a URL.",
        )(command)

    return decorate


admin_url_option = _database_url_options("admin")
"""The admin URL: ``--database-url``, ``--database-url-file`` or ``--data-dir``."""

app_url_option = _database_url_options("app")
"""The application role's URL: ``--database-url`` or ``--data-dir``."""
