"""A patient's consents to partners, and the mutations that grant and revoke them."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.field_check import policy_field
from gateway.ids import encode_global_id
from resolvers.partner import Partner
from resolvers.rows import FromRow

__all__ = ["Consent"]


@strawberry.type(description="Your permission for a partner to read parts of your record.")
class Consent(FromRow):
    pk: strawberry.Private[UUID]
    owner: strawberry.Private[UUID]
    partner_pk: strawberry.Private[UUID]
    id: strawberry.ID | None = policy_field()
    scopes: list[str] | None = policy_field(description="SMART scopes, e.g. patient/Recording.rs")
    granted_at: datetime | None = policy_field()
    expires_at: datetime | None = policy_field()
    revoked_at: datetime | None = policy_field()

    @policy_field(description="In force now: not revoked, not expired.")
    def active(self) -> bool | None:
        return self.revoked_at is None and self.expires_at > datetime.now(UTC)

    @policy_field()
    async def partner(self, info: strawberry.Info) -> Partner | None:
        row = await info.context.loaders.partner.load(self.partner_pk)
        return Partner.maybe(row)

    @classmethod
    def from_row(cls, row: Record) -> Consent:
        return cls(
            pk=row["id"],
            owner=row["patient_id"],
            partner_pk=row["partner_id"],
            id=strawberry.ID(encode_global_id("Consent", row["id"])),
            scopes=list(row["scopes"]),
            granted_at=row["granted_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
        )
