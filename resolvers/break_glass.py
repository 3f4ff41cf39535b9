"""Emergency ("break-glass") access of a clinician to one patient, bounded in time."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.context import Info
from gateway.authz.field_check import policy_field
from gateway.ids import encode_global_id
from resolvers.patient import Patient
from resolvers.rows import FromRow

__all__ = ["BreakGlassGrant"]


@strawberry.type(description="Emergency access you opened; every read under it is audited.")
class BreakGlassGrant(FromRow):
    pk: strawberry.Private[UUID]
    owner: strawberry.Private[UUID]
    # The row is the clinician's own grant (api.open_break_glass returns only that).
    granted: strawberry.Private[str | None] = "break-glass"
    id: strawberry.ID | None = policy_field()
    reason: str | None = policy_field()
    opened_at: datetime | None = policy_field()
    expires_at: datetime | None = policy_field()

    @policy_field()
    async def patient(self, info: Info) -> Patient | None:
        row = await info.context.loaders.patient.load(self.owner)
        return Patient.maybe(row)

    @classmethod
    def from_row(cls, row: Record) -> BreakGlassGrant:
        return cls(
            pk=row["id"],
            owner=row["patient_id"],
            id=strawberry.ID(encode_global_id("BreakGlassGrant", row["id"])),
            reason=row["reason"],
            opened_at=row["opened_at"],
            expires_at=row["expires_at"],
        )
