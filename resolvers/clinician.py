"""A clinician of the service, as the schema shows them: not patient data."""

from __future__ import annotations

from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.field_check import policy_field
from gateway.ids import encode_global_id
from resolvers.node import Node
from resolvers.rows import FromRow

__all__ = ["Clinician"]


@strawberry.type(description="A clinician of the service. Not patient data.")
class Clinician(FromRow, Node):
    pk: strawberry.Private[UUID]
    owner: strawberry.Private[UUID | None]
    id: strawberry.ID = policy_field()
    display_name: str | None = policy_field()
    specialty: str | None = policy_field()

    @classmethod
    def from_row(cls, row: Record) -> Clinician:
        return cls(
            pk=row["id"],
            owner=None,
            id=strawberry.ID(encode_global_id("Clinician", row["id"])),
            display_name=row["display_name"],
            specialty=row["specialty"],
        )
