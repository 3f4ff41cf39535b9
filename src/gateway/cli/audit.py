"""``gateway audit verify`` and ``gateway audit export``."""

from __future__ import annotations

import sys
from typing import Any

import click

from gateway.cli.database_url import admin_url_option
from gateway.cli.running import connect, run

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """The audit trail: verify its hash chain, export it."""


@audit.command("verify")
@admin_url_option
def audit_verify(database_url: str) -> None:
    """Check the hash chain; name the first broken link (exit 1)."""
    from gateway.audit.chain import ChainReport, verify_chain

    async def go() -> ChainReport:
        connection = await connect(database_url)
        try:
            return await verify_chain(connection)
        finally:
            await connection.close()

    report = run(go())
    if not report.intact:
        click.echo(f"gateway: audit chain {report.message}", err=True)
        sys.exit(1)
    click.echo(report.message)


@audit.command("export")
@admin_url_option
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    required=True,
    help="Earliest event time (UTC unless an offset is given).",
)
@click.option(
    "--format", "output_format", type=click.Choice(["fhir"]), default="fhir", show_default=True
)
@click.option("--output", type=click.File("w"), default="-", help="File (default stdout).")
def audit_export(database_url: str, since: Any, output_format: str, output: Any) -> None:
    """Write events as FHIR R4 AuditEvent JSON, one per line."""
    from datetime import UTC

    import orjson

    from gateway.audit.fhir import to_audit_event

    start = since if since.tzinfo else since.replace(tzinfo=UTC)

    async def go() -> int:
        connection = await connect(database_url)
        count = 0
        try:
            async with connection.transaction(readonly=True):
                query = (
                    "select e.*, data.event_objects(e) as resolved_objects "
                    "from data.access_events e where occurred_at >= $1 "
                    "and seq is not null order by seq"
                )
                async for row in connection.cursor(query, start, prefetch=1000):
                    output.write(orjson.dumps(to_audit_event(row)).decode() + "\n")
                    count += 1
        finally:
            await connection.close()
        return count

    count = run(go())
    click.echo(f"exported {count} events", err=True)
