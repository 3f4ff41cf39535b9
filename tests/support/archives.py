"""Months of the audit trail as the archive catalog (``data.audit_archives``) lists them, for the
access log's tests.

The catalog is append-only (a row is inserted, and may later be marked deleted, nothing else) and
the test database is shared by every module a worker runs, so the rows made here are made once,
idempotently, for months long before any event (2001), with no runs: the chains' verification
and an export since 2020 find nothing of theirs. A month still kept is marked deleted when its
test is done (``archived``), so that no later module meets a kept archive whose file does not
exist (``gateway audit verify --full`` would read it, the archive command's retention delete it);
each kept month is one module's. The superuser's statements run on a thread of their own, so
that a browser test, whose thread Playwright's event loop holds, may call these too.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support.database import as_admin

__all__ = ["DELETED", "KEPT", "KEPT_FOR_THE_APP", "ArchivedMonth", "archived", "record_deleted"]


@dataclass(frozen=True)
class ArchivedMonth:
    name: str
    start: datetime
    end: datetime
    location: str
    archived_at: datetime
    deleted_at: datetime | None


# Kept: marked deleted when its one module is done (test_access_log_archives.py) ...
KEPT = ArchivedMonth(
    "access_events_2001_02",
    datetime(2001, 2, 1, tzinfo=UTC),
    datetime(2001, 3, 1, tzinfo=UTC),
    "s3://gateway-test/audit-archive/access_events_2001_02.jsonl.gz",
    datetime(2001, 3, 2, 3, 0, tzinfo=UTC),
    None,
)
# ... (test_web_app.py).
KEPT_FOR_THE_APP = ArchivedMonth(
    "access_events_2001_03",
    datetime(2001, 3, 1, tzinfo=UTC),
    datetime(2001, 4, 1, tzinfo=UTC),
    "s3://gateway-test/audit-archive/access_events_2001_03.jsonl.gz",
    datetime(2001, 4, 2, 3, 0, tzinfo=UTC),
    None,
)
# Deleted past retention from the start: any module may record it, as often as it likes.
DELETED = ArchivedMonth(
    "access_events_2001_01",
    datetime(2001, 1, 1, tzinfo=UTC),
    datetime(2001, 2, 1, tzinfo=UTC),
    "/var/lib/gateway/audit-archive/access_events_2001_01.jsonl.gz",
    datetime(2001, 2, 2, 3, 0, tzinfo=UTC),
    datetime(2007, 3, 1, 4, 0, tzinfo=UTC),
)

_RECORD = (
    "insert into data.audit_archives (partition_name, period_start, period_end, location, "
    "sha256, bytes, events, runs, archived_at, deleted_at) "
    "values ($1, $2, $3, $4, repeat('0', 64), 1024, 3, '[]', $5, $6) "
    "on conflict (partition_name) do nothing"
)
_MARK_DELETED = (
    "update data.audit_archives set deleted_at = now() "
    "where partition_name = $1 and deleted_at is null"
)


def _as_admin(env: Any, work: Any) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(as_admin, env, work).result()


def _record(env: Any, months: tuple[ArchivedMonth, ...]) -> None:
    async def work(connection: Any) -> None:
        for month in months:
            await connection.execute(
                _RECORD,
                month.name,
                month.start,
                month.end,
                month.location,
                month.archived_at,
                month.deleted_at,
            )
            stored = await connection.fetchval(
                "select deleted_at from data.audit_archives where partition_name = $1", month.name
            )
            assert stored == month.deleted_at, f"{month.name} was recorded otherwise before"

    _as_admin(env, work)


def record_deleted(env: Any, *months: ArchivedMonth) -> None:
    """``months``, each deleted past retention, in the catalog (a kept month: ``archived``)."""
    assert all(month.deleted_at is not None for month in months)
    _record(env, months)


@contextlib.contextmanager
def archived(env: Any, *months: ArchivedMonth) -> Iterator[None]:
    """``months`` in the catalog, as the superuser records them; those kept are marked deleted
    on the way out."""
    _record(env, months)
    try:
        yield
    finally:
        kept = [month.name for month in months if month.deleted_at is None]

        async def mark(connection: Any) -> None:
            for name in kept:
                await connection.execute(_MARK_DELETED, name)

        if kept:
            _as_admin(env, mark)
