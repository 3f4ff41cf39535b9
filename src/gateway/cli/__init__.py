"""The ``gateway`` command, one module per command group.

The groups: dev, token, serve, migrate, seed, accounts, partners, audit (verify, export), explain,
manifest (build), plan (print), schema, policy, settings."""

from __future__ import annotations

import click

from gateway.cli.administration import accounts, partners
from gateway.cli.audit import audit
from gateway.cli.database import migrate, seed
from gateway.cli.development import dev, token
from gateway.cli.explain import explain
from gateway.cli.introspect import policy, schema, settings_command
from gateway.cli.manifest import manifest
from gateway.cli.plan import plan
from gateway.cli.running import fail
from gateway.cli.serve import serve
from gateway.errors import ConfigurationError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The consultation gateway."""


for command in (
    dev,
    token,
    serve,
    migrate,
    seed,
    accounts,
    partners,
    audit,
    explain,
    manifest,
    plan,
    schema,
    policy,
):
    cli.add_command(command)
cli.add_command(settings_command, "settings")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted")
    except click.ClickException as exc:
        fail(exc.format_message())
    except ConfigurationError as exc:
        fail(exc.message)
