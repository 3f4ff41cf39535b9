"""A patient: who they are, and their consultations the caller may see."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.context import Info
from gateway.authz.field_check import policy_field
from gateway.ids import encode_global_id
from resolvers.node import Node
from resolvers.rows import FromRow

if TYPE_CHECKING:
    from resolvers.consultation import Consultation

__all__ = ["Patient"]


@strawberry.type(description="A patient. Visible to the patient and to their clinicians.")
class Patient(FromRow, Node):
    pk: strawberry.Private[UUID]
    owner: strawberry.Private[UUID]
    consent_scopes: strawberry.Private[tuple[str, ...] | None]
    granted: strawberry.Private[str | None]
    id: strawberry.ID = policy_field()
    display_name: str | None = policy_field()
    birth_date: date | None = policy_field()

    @policy_field(description="Their consultations you may see, newest first.")
    async def consultations(
        self, info: Info
    ) -> list[Annotated[Consultation, strawberry.lazy("resolvers.consultation")]] | None:
        from resolvers.consultation import Consultation

        rows = await info.context.loaders.consultations_of.load(self.pk)
        return Consultation.many(rows)

    @classmethod
    def from_row(cls, row: Record) -> Patient:
        return cls(
            pk=row["id"],
            consent_scopes=row["consent_scopes"],
            granted=row.get("granted"),
            owner=row["id"],
            id=strawberry.ID(encode_global_id("Patient", row["id"])),
            display_name=row["display_name"],
            birth_date=row["birth_date"],
        )
