"""A patient's access log: who read their record, when, and what."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from uuid import UUID

import orjson
import strawberry
from asyncpg import Record

from gateway.audit.events import expand_objects
from gateway.authz.context import Info
from gateway.authz.field_check import policy_field
from gateway.ids import encode_global_id, encode_sequence_cursor
from resolvers.archived_period import ArchivedPeriod
from resolvers.consultation import Consultation, PageInfo
from resolvers.enums import Role

__all__ = ["AccessEvent", "AccessEventConnection", "AccessKind", "AccessedObject"]

_ROLES = {role.value for role in Role}


@strawberry.enum
class AccessKind(Enum):
    DISCLOSURE = "disclosure"
    MEDIA = "media"
    DENIAL = "denial"
    ALERT = "alert"
    CONSENT_GRANTED = "consent-granted"
    CONSENT_REVOKED = "consent-revoked"
    BREAK_GLASS_OPENED = "break-glass-opened"
    ACCOUNT_CHANGED = "account-changed"  # an operator's change (`gateway accounts`)
    PARTNER_CHANGED = "partner-changed"  # an operator's change (`gateway partners`)


@strawberry.type(description="An object of yours that an access disclosed, and which fields.")
class AccessedObject:
    pk: strawberry.Private[int]
    owner: strawberry.Private[UUID]
    object_pk: strawberry.Private[str]  # a UUID, or an AccessEvent's sequence number
    type_name: str | None = policy_field(name="type")
    id: strawberry.ID | None = policy_field()
    fields: list[str] | None = policy_field()

    @policy_field(
        description="The consultation this object is, or a recording's consultation; null for "
        "any other object, or one no longer yours to see."
    )
    async def consultation(self, info: Info) -> Consultation | None:
        loaders = info.context.loaders
        if self.type_name == "Consultation":
            pk = UUID(self.object_pk)
        elif self.type_name == "Recording":
            recording = await loaders.recording.load(UUID(self.object_pk))
            if recording is None:
                return None
            pk = recording["consultation_id"]
        else:
            return None
        return Consultation.maybe(await loaders.consultation.load(pk))


@strawberry.type(description="One access to your record: who, when, what.")
class AccessEvent:
    pk: strawberry.Private[int]
    owner: strawberry.Private[UUID]
    occurred_at: datetime | None = policy_field()
    kind: AccessKind | None = policy_field()
    accessor_role: Role | None = policy_field()
    accessor_subject: str | None = policy_field()
    accessor_name: str | None = policy_field(description="The clinician's name, when one.")
    break_glass_reason: str | None = policy_field()
    objects: list[AccessedObject] | None = policy_field()
    patient_id: strawberry.ID | None = policy_field(description="Whose record was accessed.")

    @classmethod
    def from_row(cls, row: Record) -> AccessEvent:
        owner = row["patient_id"]
        return cls(
            pk=row["seq"],
            owner=owner,
            occurred_at=row["occurred_at"],
            kind=AccessKind(row["kind"]),
            # An operator's change (ACCOUNT_CHANGED, PARTNER_CHANGED) has no role of the schema.
            accessor_role=Role(row["role"]) if row["role"] in _ROLES else None,
            accessor_subject=row["subject"],
            accessor_name=row["actor_name"],
            break_glass_reason=row["break_glass_reason"],
            patient_id=strawberry.ID(encode_global_id("Patient", owner)) if owner else None,
            objects=[
                AccessedObject(
                    pk=row["seq"],
                    owner=owner,
                    object_pk=str(item["id"]),
                    type_name=item["type"],
                    id=strawberry.ID(encode_global_id(item["type"], item["id"])),
                    fields=item["fields"],
                )
                for item in expand_objects(orjson.loads(row["objects"]))
            ],
        )


@strawberry.type
class AccessEventEdge:
    cursor: str
    node: AccessEvent | None


@strawberry.type
class AccessEventConnection:
    edges: list[AccessEventEdge]
    page_info: PageInfo

    @strawberry.field(
        description="The months whose accesses were moved to the audit archive, newest first: "
        "their accesses are not among the edges, whatever the page or filter. Each says where "
        "its records are."
    )
    async def archived_periods(self, info: Info) -> list[ArchivedPeriod]:
        return ArchivedPeriod.many(await info.context.loaders.archived_periods())

    @classmethod
    def from_rows(cls, rows: list[Record], first: int, after: bool) -> AccessEventConnection:
        edges = [
            AccessEventEdge(
                cursor=encode_sequence_cursor(row["seq"]), node=AccessEvent.from_row(row)
            )
            for row in rows[:first]
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first,
                has_previous_page=after,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )
