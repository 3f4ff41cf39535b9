"""The root query: arguments, a loader call, a domain object. No SQL, policy or audit here."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import strawberry

from gateway.authz.context import Info
from gateway.errors import BadUserInput
from gateway.ids import decode_cursor, decode_global_id, decode_sequence_cursor
from resolvers.access_log import AccessEventConnection
from resolvers.clinician import Clinician
from resolvers.consent import Consent
from resolvers.consultation import Consultation, ConsultationConnection
from resolvers.node import Node
from resolvers.partner import Partner
from resolvers.patient import Patient
from resolvers.recording import Recording
from resolvers.viewer import Viewer

__all__ = ["Query"]


async def _consultation(info: Info, pk: UUID) -> Consultation | None:
    return Consultation.maybe(await info.context.loaders.consultation.load(pk))


async def _recording(info: Info, pk: UUID) -> Recording | None:
    return Recording.maybe(await info.context.loaders.recording.load(pk))


async def _patient(info: Info, pk: UUID) -> Patient | None:
    return Patient.maybe(await info.context.loaders.patient.load(pk))


async def _clinician(info: Info, pk: UUID) -> Clinician | None:
    return Clinician.maybe(await info.context.loaders.clinician.load(pk))


async def _partner(info: Info, pk: UUID) -> Partner | None:
    return Partner.maybe(await info.context.loaders.partner.load(pk))


_NODES = {
    "Partner": _partner,
    "Consultation": _consultation,
    "Recording": _recording,
    "Patient": _patient,
    "Clinician": _clinician,
}


def _pk_of(global_id: str, type_name: str) -> UUID | None:
    """The key of an ID of ``type_name``; None for an ID of another type (no such object)."""
    decoded_type, pk = decode_global_id(global_id)
    return pk if decoded_type == type_name else None


def _page_size(info: Info, first: int | None) -> int:
    settings = info.context.settings
    size = settings.page_size_default if first is None else first
    if not 0 <= size <= settings.page_size_max:
        raise BadUserInput(f"'first' must be between 0 and {settings.page_size_max}")
    return size


@strawberry.type
class Query:
    @strawberry.field(description="The authenticated caller.")
    def me(self, info: Info) -> Viewer:
        principal = info.context.principal
        return Viewer(pk=None, owner=None, role_of=principal.role, subject=principal.subject)

    @strawberry.field(description="Any object by its global ID; null when it is not yours to see.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, pk = decode_global_id(id)
        resolve = _NODES.get(type_name)
        return await resolve(info, pk) if resolve else None

    @strawberry.field(
        description="Your consultations (a patient's own; a clinician's conducted), newest first."
    )
    async def consultations(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> ConsultationConnection:
        size = _page_size(info, first)
        position = decode_cursor(after) if after is not None else None
        page = await info.context.loaders.consultations_page(size, position)
        return ConsultationConnection.from_page(page.rows, page.has_next_page, position is not None)

    @strawberry.field(description="Partners you may consent to share data with.")
    async def partners(self, info: Info) -> list[Partner]:
        return Partner.many(await info.context.loaders.all_partners())

    @strawberry.field(description="Your consents to partners, newest first (patients).")
    async def consents(self, info: Info) -> list[Consent]:
        return Consent.many(await info.context.loaders.consents())

    @strawberry.field(
        description="Who read your record and when (patients); every patient's (auditors)."
    )
    async def access_log(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        by_others: Annotated[
            bool,
            strawberry.argument(
                description="Only accesses by someone else: a patient's own reads left out."
            ),
        ] = False,
        emergency: Annotated[
            bool,
            strawberry.argument(description="Only emergency (break-glass) accesses."),
        ] = False,
    ) -> AccessEventConnection:
        size = _page_size(info, first)
        before = decode_sequence_cursor(after) if after is not None else None
        rows = await info.context.loaders.access_events_page(
            size, before, by_others=by_others, emergency=emergency
        )
        return AccessEventConnection.from_rows(rows, size, before is not None)

    @strawberry.field
    async def consultation(self, info: Info, id: strawberry.ID) -> Consultation | None:
        pk = _pk_of(id, "Consultation")
        return await _consultation(info, pk) if pk else None

    @strawberry.field
    async def recording(self, info: Info, id: strawberry.ID) -> Recording | None:
        pk = _pk_of(id, "Recording")
        return await _recording(info, pk) if pk else None

    @strawberry.field
    async def patient(self, info: Info, id: strawberry.ID) -> Patient | None:
        pk = _pk_of(id, "Patient")
        return await _patient(info, pk) if pk else None
