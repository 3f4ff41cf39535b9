"""A consultation between a patient and a clinician, and the pages of consultations."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import strawberry
from asyncpg import Record

from gateway.authz.context import Info
from gateway.authz.field_check import policy_field
from gateway.data.loaders import loaded_by
from gateway.ids import encode_cursor, encode_global_id
from resolvers.clinician import Clinician
from resolvers.enums import ConsultationMode, ConsultationStatus
from resolvers.node import Node
from resolvers.patient import Patient
from resolvers.recording import Recording
from resolvers.rows import FromRow

__all__ = ["Consultation", "ConsultationConnection", "ConsultationEdge", "PageInfo"]


@strawberry.type(description="A consultation between a patient and a clinician.")
class Consultation(FromRow, Node):
    pk: strawberry.Private[UUID]
    owner: strawberry.Private[UUID]
    consent_scopes: strawberry.Private[tuple[str, ...] | None]
    granted: strawberry.Private[str | None]
    clinician_pk: strawberry.Private[UUID]
    id: strawberry.ID = policy_field()
    scheduled_at: datetime | None = policy_field()
    status: ConsultationStatus | None = policy_field()
    mode: ConsultationMode | None = policy_field()
    reason: str | None = policy_field()
    summary: str | None = policy_field()
    clinician_notes: str | None = policy_field()

    @policy_field()
    @loaded_by("patient", "owner", Patient.maybe)
    def patient(self, info: Info) -> Patient | None:
        """The consultation's patient."""

    @policy_field()
    @loaded_by("clinician", "clinician_pk", Clinician.maybe)
    def clinician(self, info: Info) -> Clinician | None:
        """The consultation's clinician."""

    @policy_field(description="The recording's segments in order (audio, then video).")
    @loaded_by("recordings_of", "pk", Recording.many)
    def recordings(self, info: Info) -> list[Recording] | None:
        """The consultation's recordings."""

    @classmethod
    def from_row(cls, row: Record) -> Consultation:
        return cls(
            pk=row["id"],
            consent_scopes=row["consent_scopes"],
            granted=row.get("granted"),
            owner=row["patient_id"],
            clinician_pk=row["clinician_id"],
            id=strawberry.ID(encode_global_id("Consultation", row["id"])),
            scheduled_at=row["scheduled_at"],
            status=ConsultationStatus(row["status"]),
            mode=ConsultationMode(row["mode"]),
            reason=row["reason"],
            summary=row["summary"],
            clinician_notes=row["clinician_notes"],
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def _edge_cursor(root: ConsultationEdge) -> str:
    """Made when asked for: most pages never read their edges' cursors."""
    return encode_cursor(*root.position)


@strawberry.type
class ConsultationEdge:
    position: strawberry.Private[tuple[datetime, UUID]]
    cursor: str = strawberry.field(resolver=_edge_cursor)
    node: Consultation | None


@strawberry.type
class ConsultationConnection:
    edges: list[ConsultationEdge]
    page_info: PageInfo

    @classmethod
    def from_page(
        cls, rows: list[Record], has_next_page: bool, after: bool
    ) -> ConsultationConnection:
        edges = [
            ConsultationEdge(
                position=(row["scheduled_at"], row["id"]), node=Consultation.from_row(row)
            )
            for row in rows
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next_page,
                has_previous_page=after,
                start_cursor=_edge_cursor(edges[0]) if edges else None,
                end_cursor=_edge_cursor(edges[-1]) if edges else None,
            ),
        )
