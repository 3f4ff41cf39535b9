"""A partner (pharmacy, insurer, care provider) patients may consent to share data with."""

from __future__ import annotations

from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.field_check import policy_field
from gateway.ids import encode_global_id
from resolvers.node import Node
from resolvers.rows import FromRow

__all__ = ["Partner"]


@strawberry.type(description="A pharmacy, insurer or care provider patients may share data with.")
class Partner(FromRow, Node):
    pk: strawberry.Private[UUID]
    owner: strawberry.Private[UUID | None]
    id: strawberry.ID = policy_field()
    name: str | None = policy_field()

    @classmethod
    def from_row(cls, row: Record) -> Partner:
        return cls(
            pk=row["id"],
            owner=None,
            id=strawberry.ID(encode_global_id("Partner", row["id"])),
            name=row["name"],
        )
