"""``gateway audit``: verify the hash chains, make partitions ahead, archive, restore, export."""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.cli.database_url import admin_url_option
from gateway.cli.running import connect, fail, run

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """The audit trail: verify its hash chain, export it."""


def _store(archive_root: Path | None) -> Any:
    """The archive store: ``--archive-root``, else ``DIR/audit-archive`` with ``--data-dir DIR``,
    else the settings' (GATEWAY_AUDIT_ARCHIVE_ROOT, or the media bucket)."""
    from gateway.audit.archive_store import FolderStore, archive_store
    from gateway.config import load_settings_of

    if archive_root is not None:
        return FolderStore(archive_root)
    data_dir = click.get_current_context().meta.get("data_dir")
    if data_dir is not None:  # a development instance: a folder beside its database
        return FolderStore(Path(data_dir[0]) / "audit-archive")
    return archive_store(
        load_settings_of(
            "audit_archive_root",
            "media_store",
            "media_s3_bucket",
            "media_s3_endpoint_url",
            "media_s3_region",
        )
    )


def _archive_root_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--archive-root",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder of the archives (default GATEWAY_AUDIT_ARCHIVE_ROOT, else the media bucket).",
    )(function)


def _operator_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--operator",
        default=lambda: os.environ.get("GATEWAY_OPERATOR") or getpass.getuser(),
        show_default="$GATEWAY_OPERATOR, else the login name",
        help="Who acts, as the audit trail records it.",
    )(function)


@audit.command("verify")
@admin_url_option
@click.option(
    "--full",
    is_flag=True,
    help="Every event from the start, the archived months read from their files.",
)
@_archive_root_option
@click.option(
    "--months-ahead",
    type=click.IntRange(0, 24),
    default=None,
    help="First make the trail's months ahead (this one and the next N): the nightly job's.",
)
@click.option(
    "--anchor",
    "anchor_at",
    default=None,
    help="Where the chains' heads are kept outside the database, a folder or s3://bucket/prefix "
    "(default GATEWAY_AUDIT_ANCHOR; none: the trail is verified against itself).",
)
@click.option(
    "--first-anchor",
    is_flag=True,
    help="With --full: write the first anchor where there is none (refused where there is one).",
)
def audit_verify(
    database_url: str,
    full: bool,
    archive_root: Path | None,
    months_ahead: int | None,
    anchor_at: str | None,
    first_anchor: bool,
) -> None:
    """Check the hash chains since the last checkpoint (--full: everything, archives too), from
    the anchor's heads when there is one; name the first broken link (exit 1); record the new
    checkpoints and write the anchor."""
    import time

    import asyncpg

    from gateway.audit.anchor import anchor_store, read_anchor, write_anchor
    from gateway.audit.archive import verify
    from gateway.audit.chain import ChainReport
    from gateway.audit.checkpoints import record_checkpoints
    from gateway.config import load_settings_of
    from gateway.errors import ConfigurationError

    anchored = "; not anchored outside the database (GATEWAY_AUDIT_ANCHOR)"

    async def go() -> ChainReport:
        nonlocal anchored
        settings = load_settings_of("audit_anchor", "media_s3_endpoint_url", "media_s3_region")
        where = anchor_at or settings.audit_anchor
        if first_anchor and not where:
            raise ConfigurationError("--first-anchor needs --anchor or GATEWAY_AUDIT_ANCHOR")
        if first_anchor and not full:
            raise ConfigurationError(
                "--first-anchor needs --full: the first anchor is written once every event and "
                "every archived month has been verified"
            )
        store = anchor_store(where, settings) if where else None
        anchor = read_anchor(store, first=first_anchor) if store is not None else None
        connection = await connect(database_url)
        try:
            if months_ahead is not None:
                try:
                    await connection.execute(
                        "select data.create_access_event_partitions($1)", months_ahead
                    )
                except asyncpg.LockNotAvailableError as exc:
                    # The months are made ahead: tomorrow's run makes them; verify goes on.
                    click.echo(
                        f"gateway: warning: the months ahead were not made ({exc}: another "
                        "session holds a lock on data.access_events); the next run makes them",
                        err=True,
                    )
            report, tails, catalog = await verify(
                connection, full=full, anchor=anchor, archives=lambda: _store(archive_root)
            )
            if report.intact:
                await record_checkpoints(connection, tails)
                if store is not None:
                    first = " (the first)" if anchor is None else ""
                    anchored = f"; anchored{first} at {write_anchor(store, tails, catalog)}"
            return report
        finally:
            await connection.close()

    started = time.monotonic()
    report = run(go())
    if not report.intact:
        click.echo(f"gateway: audit chain {report.message}", err=True)
        sys.exit(1)
    seconds = time.monotonic() - started
    rate = f", {report.events / seconds:,.0f} events/s" if report.events else ""
    scope = "everything, archives included" if full else "since the last checkpoint"
    click.echo(f"{report.message} ({scope}; {seconds:.2f} s{rate}{anchored})")


@audit.command("partitions")
@admin_url_option
@click.option("--months-ahead", type=click.IntRange(0, 24), default=3, show_default=True)
def audit_partitions(database_url: str, months_ahead: int) -> None:
    """Make the audit trail's monthly partitions ahead (this month and the next N)."""

    async def go() -> list[str]:
        connection = await connect(database_url)
        try:
            rows = await connection.fetch(
                "select data.create_access_event_partitions($1)", months_ahead
            )
            return [row[0] for row in rows]
        finally:
            await connection.close()

    made = run(go())
    click.echo(f"made {len(made)} partitions" + (f": {', '.join(made)}" if made else ""))


@audit.command("archive")
@admin_url_option
@click.option(
    "--before",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="Archive every month that ended on or before this date (UTC).",
)
@_archive_root_option
@_operator_option
def audit_archive(database_url: str, before: Any, archive_root: Path | None, operator: str) -> None:
    """Archive ended months to the store (checked after reading them back) and drop them from
    the database; then delete archives past GATEWAY_AUDIT_RETENTION. Both audited."""
    from datetime import UTC

    from gateway.audit.archive import ArchiveStopped, archive_before, delete_expired
    from gateway.audit.archive_file import ArchiveError
    from gateway.config import load_settings_of, retention_months
    from gateway.errors import ConfigurationError

    store = _store(archive_root)
    retention = retention_months(load_settings_of("audit_retention").audit_retention)

    async def go() -> tuple[list[Any], list[str], list[str], Any, str | None]:
        connection = await connect(database_url)
        try:
            try:
                archived, dropped, left = await archive_before(
                    connection, store, before.replace(tzinfo=UTC), operator
                )
            except ArchiveStopped as exc:  # what was done before the month that failed
                return exc.archived, exc.dropped, exc.left, ([], []), f"archive: {exc}"
            except ArchiveError as exc:
                fail(f"archive: {exc}")
            try:  # what was archived is reported even when the retention is refused
                expired = await delete_expired(connection, store, retention, operator)
                return archived, dropped, left, expired, None
            except ArchiveError as exc:
                return archived, dropped, left, ([], []), f"retention: {exc}"
            except ConfigurationError as exc:
                return archived, dropped, left, ([], []), f"retention: {exc.message}"
        finally:
            await connection.close()

    archived, dropped, left, (deleted, swept), refused = run(go())
    for done in archived:
        click.echo(
            f"archived {done.partition}: {done.events} events, {done.bytes} bytes, "
            f"sha256 {done.sha256}, at {done.location}"
        )
    for name in dropped:
        click.echo(f"dropped {name} from the database")
    for name in left:
        click.echo(
            f"gateway: {name} is archived; its partition could not get its locks within a "
            "minute and is dropped by the next run (meanwhile it is read from its archive)",
            err=True,
        )
    months = f"{retention} month" + ("s" if retention != 1 else "")
    for name in deleted:
        click.echo(f"deleted {name}: past the retention of {months}")
    for name in swept:
        click.echo(f"deleted the file of {name}, which an earlier run left (marked deleted then)")
    if refused is not None:
        fail(refused)
    if not (archived or dropped or left or deleted or swept):
        click.echo("nothing to archive")


@audit.command("restore")
@admin_url_option
@click.argument("month", metavar="YYYY-MM")
@_archive_root_option
@_operator_option
def audit_restore(database_url: str, month: str, archive_root: Path | None, operator: str) -> None:
    """Load an archived month into data.restored_access_events for the auditors' queries."""
    from gateway.audit.archive import restore
    from gateway.audit.archive_file import ArchiveError

    if not re.fullmatch(r"\d{4}-\d{2}", month):
        fail(f"{month!r} is not a month (YYYY-MM)")
    store = _store(archive_root)

    async def go() -> int:
        connection = await connect(database_url)
        try:
            return await restore(
                connection, store, f"access_events_{month.replace('-', '_')}", operator
            )
        except ArchiveError as exc:
            fail(f"restore: {exc}")
        finally:
            await connection.close()

    count = run(go())
    click.echo(f"restored {count} events of {month} into data.restored_access_events")


@audit.command("export")
@admin_url_option
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    required=True,
    help="Earliest event time (UTC unless an offset is given).",
)
@click.option("--patient", type=click.UUID, default=None, help="Only this patient's events.")
@click.option(
    "--format", "output_format", type=click.Choice(["fhir"]), default="fhir", show_default=True
)
@click.option("--output", type=click.File("w"), default="-", help="File (default stdout).")
@_archive_root_option
def audit_export(
    database_url: str,
    since: Any,
    patient: Any,
    output_format: str,
    output: Any,
    archive_root: Path | None,
) -> None:
    """Write events as FHIR R4 AuditEvent JSON, one per line: the archived months first (read
    from their archives, each checked against its digest), then the trail, each by seq."""
    from datetime import UTC

    from gateway.audit.archive import export_archived, export_live

    start = since if since.tzinfo else since.replace(tzinfo=UTC)

    async def go() -> int:
        connection = await connect(database_url)
        try:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                # First, so that no month can be archived and dropped between the catalog read
                # and the trail's (the snapshot starts here).
                await connection.execute("lock table data.access_events in access share mode")
                archived = await connection.fetch(
                    "select partition_name, location, deleted_at from data.audit_archives "
                    "where period_end > $1 order by period_start",
                    start,
                )
                count = 0
                store = _store(archive_root) if archived else None
                for row in archived:
                    if row["deleted_at"] is not None:
                        click.echo(
                            f"{row['partition_name']}: deleted on {row['deleted_at']:%Y-%m-%d} "
                            f"under retention (it was at {row['location']}); not exported",
                            err=True,
                        )
                        continue
                    assert store is not None
                    written = await export_archived(
                        connection, store, row["partition_name"], start, patient, output
                    )
                    click.echo(
                        f"{row['partition_name']}: archived at {row['location']}; "
                        f"{written} events read from the archive",
                        err=True,
                    )
                    count += written
                return count + await export_live(connection, start, patient, output)
        finally:
            await connection.close()

    from gateway.audit.archive_file import ArchiveError

    try:
        count = run(go())
    except ArchiveError as exc:
        fail(f"export: {exc}")
    click.echo(f"exported {count} events", err=True)
