"""One segment of a consultation's recording, and the playback URL bound to its viewer."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.context import Info
from gateway.authz.field_check import policy_field
from gateway.ids import encode_global_id
from resolvers.enums import ConsultationMode
from resolvers.node import Node
from resolvers.rows import FromRow

if TYPE_CHECKING:
    from resolvers.consultation import Consultation

__all__ = ["Recording"]


@strawberry.type(
    description="One segment of a consultation's recording: audio, then video after a switch."
)
class Recording(FromRow, Node):
    pk: strawberry.Private[UUID]
    owner: strawberry.Private[UUID]
    consent_scopes: strawberry.Private[tuple[str, ...] | None]
    granted: strawberry.Private[str | None]
    consultation_pk: strawberry.Private[UUID]
    id: strawberry.ID = policy_field()
    segment_index: int | None = policy_field()
    mode: ConsultationMode | None = policy_field()
    started_at: datetime | None = policy_field()
    duration_seconds: int | None = policy_field()
    content_type: str | None = policy_field()
    byte_size: int | None = policy_field()

    @policy_field(description="The consultation this segment belongs to.")
    async def consultation(
        self, info: Info
    ) -> Annotated[Consultation, strawberry.lazy("resolvers.consultation")] | None:
        from resolvers.consultation import Consultation

        row = await info.context.loaders.consultation.load(self.consultation_pk)
        return Consultation.maybe(row)

    @policy_field(description="A short-lived URL, bound to the viewer, that plays this segment.")
    def playback_url(self, info: Info) -> str | None:
        principal = info.context.principal
        return info.context.playback.url(self.pk, self.id, principal.issuer, principal.subject)

    @classmethod
    def from_row(cls, row: Record) -> Recording:
        return cls(
            pk=row["id"],
            consent_scopes=row["consent_scopes"],
            granted=row.get("granted"),
            owner=row["patient_id"],
            consultation_pk=row["consultation_id"],
            id=strawberry.ID(encode_global_id("Recording", row["id"])),
            segment_index=row["segment_index"],
            mode=ConsultationMode(row["mode"]),
            started_at=row["started_at"],
            duration_seconds=row["duration_seconds"],
            content_type=row["content_type"],
            byte_size=row["byte_size"],
        )
