"""``gateway manifest build``: the trusted documents manifest from the apps' operations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from gateway.cli.running import fail
from gateway.errors import ConfigurationError

__all__ = ["manifest"]


@click.group()
def manifest() -> None:
    """Trusted documents: the manifest of operations first-party apps may send by hash."""


@manifest.command("build")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--output", type=click.File("w"), default="-", help="File (default stdout).")
def manifest_build(paths: tuple[Path, ...], output: Any) -> None:
    """Build a persisted query manifest from .graphql files (or folders of them)."""
    from gateway.guards.trusted_documents import build_manifest
    from resolvers import build_schema

    files: list[Path] = []
    for path in paths:
        files += sorted(path.rglob("*.graphql")) if path.is_dir() else [path]
    if not files:
        fail("manifest: no .graphql files found")
    try:
        built = build_manifest(files, build_schema()._schema)
    except ConfigurationError as exc:
        fail(exc.message)
    except Exception as exc:  # a syntax error in an app's document
        fail(f"manifest: {exc}".splitlines()[0])
    output.write(json.dumps(built, indent=2) + "\n")
    click.echo(f"{len(built['operations'])} operations", err=True)
