"""A patient's consents to partners, and partners' requests for consent (the consent page)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode
from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.context import Info
from gateway.authz.field_check import policy_field
from gateway.ids import encode_global_id
from resolvers.partner import Partner
from resolvers.rows import FromRow

__all__ = ["Consent", "ConsentRequest"]


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
        if self.expires_at is None:  # never from a row: the column is not null
            return None
        return self.revoked_at is None and self.expires_at > datetime.now(UTC)

    @policy_field()
    async def partner(self, info: Info) -> Partner | None:
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


@strawberry.type(
    description="A partner's request to read parts of your record, from the consent page: "
    "answered once, within validUntil."
)
class ConsentRequest(FromRow):
    pk: strawberry.Private[UUID]
    owner: strawberry.Private[UUID]
    partner_pk: strawberry.Private[UUID]
    redirect_uri: strawberry.Private[str]
    state: strawberry.Private[str]
    code: strawberry.Private[str | None]
    id: strawberry.ID | None = policy_field()
    scopes: list[str] | None = policy_field(description="SMART scopes asked for")
    consent_expires_at: datetime | None = policy_field(
        description="When the consent ends, if you approve"
    )
    valid_until: datetime | None = policy_field(description="Answer before this time")
    answered_at: datetime | None = policy_field()
    approved: bool | None = policy_field(description="Null until answered")

    @policy_field()
    async def partner(self, info: Info) -> Partner | None:
        row = await info.context.loaders.partner.load(self.partner_pk)
        return Partner.maybe(row)

    @policy_field(
        description="Once answered: where to send you back, the partner's registered address "
        "with the outcome (consent=granted and a one-time code the partner redeems for who you "
        "are, or error=access_denied) and its state."
    )
    def redirect_to(self) -> str | None:
        if self.approved is None:
            return None
        if self.approved:
            if self.code is None:  # the code goes back once, with the answer
                return None
            outcome = {"consent": "granted", "code": self.code}
        else:
            outcome = {"error": "access_denied"}
        outcome["state"] = self.state
        joiner = "&" if "?" in self.redirect_uri else "?"
        return f"{self.redirect_uri}{joiner}{urlencode(outcome)}"

    @classmethod
    def from_row(cls, row: Record, code: str | None = None) -> ConsentRequest:
        return cls(
            pk=row["id"],
            owner=row["patient_id"],
            partner_pk=row["partner_id"],
            redirect_uri=row["redirect_uri"],
            state=row["state"],
            code=code,
            id=strawberry.ID(encode_global_id("ConsentRequest", row["id"])),
            scopes=list(row["scopes"]),
            consent_expires_at=row["consent_expires_at"],
            valid_until=row["valid_until"],
            answered_at=row["answered_at"],
            approved=row["approved"],
        )
