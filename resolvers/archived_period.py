"""A month of the access log moved to the audit archive: when, and where its records are now."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.context import Info
from gateway.authz.field_check import policy_field, readable
from resolvers.rows import FromRow

__all__ = ["ArchivedPeriod", "where_sentence"]

_KEPT = (
    "the records of this month are kept in the audit archive; ask the privacy office to see them"
)


def where_sentence(deleted_at: datetime | None, location: str | None) -> str:
    """Where a period's records are, in one plain sentence; ``location`` is None for a caller
    who may not read it (a patient is told whom to ask, not where the file is)."""
    if deleted_at is not None:
        deleted = f"Deleted on {deleted_at.astimezone(UTC):%Y-%m-%d} after the retention period"
        return f"{deleted} (it was at {location})." if location else f"{deleted}."
    if location:
        return f"Archived at {location}: {_KEPT}."
    return f"Archived: {_KEPT}."


@strawberry.type(
    description="A month of the access log no longer in the database: moved to the audit "
    "archive (`gateway audit archive`), and perhaps since deleted after the retention period. "
    "Its accesses are not among the log's edges. Not patient data."
)
class ArchivedPeriod(FromRow):
    pk: strawberry.Private[int]
    owner: strawberry.Private[UUID | None]
    from_: datetime | None = policy_field(
        name="from", description="The period's first instant (a month's, UTC)."
    )
    until: datetime | None = policy_field(
        description="The period's end, exclusive: the first instant of the next month (UTC)."
    )
    archived_at: datetime | None = policy_field(
        description="When the period was moved to the archive."
    )
    deleted_at: datetime | None = policy_field(
        description="When the archive was deleted after the retention period; null while kept."
    )
    location: str | None = policy_field(
        description="Where the archive is (a file path, or s3://bucket/audit-archive/"
        "<month>.jsonl.gz), also once deleted. Auditors only."
    )

    @policy_field(
        description="Where the period's records are, in a plain sentence: archived (with the "
        "`location` for a caller who may read it; a patient is told to ask the privacy office), "
        'or "Deleted on YYYY-MM-DD after the retention period".'
    )
    def where(self, info: Info) -> str | None:
        shown = readable(info.context, self, "ArchivedPeriod", "location")
        return where_sentence(self.deleted_at, self.location if shown else None)

    @classmethod
    def from_row(cls, row: Record) -> ArchivedPeriod:
        return cls(
            pk=row["id"],
            owner=None,
            from_=row["period_start"],
            until=row["period_end"],
            archived_at=row["archived_at"],
            deleted_at=row["deleted_at"],
            location=row["location"],
        )
