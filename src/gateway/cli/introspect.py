"""What the code says about itself: ``gateway schema``, ``gateway policy``, ``gateway settings``."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["policy", "schema", "settings_command"]


@click.command()
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
def schema(output: Path | None) -> None:
    """Print the GraphQL schema (SDL)."""
    from resolvers import build_schema

    text = build_schema().as_str() + "\n"
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@click.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "markdown"]),
    default="table",
    show_default=True,
)
def policy(output_format: str) -> None:
    """Print the policy table as a role x field matrix, with conditions."""
    from gateway.policy.doc import policy_markdown, policy_matrix

    click.echo(policy_matrix() if output_format == "table" else policy_markdown(), nl=False)
    if output_format == "table":
        click.echo()


@click.command("settings")
def settings_command() -> None:
    """Print every setting (variable, default, meaning) as a Markdown table."""
    from gateway.cli.settings_doc import settings_markdown

    click.echo(settings_markdown(), nl=False)
