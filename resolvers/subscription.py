"""The root subscription: live events of a consultation you may see, over WebSocket.

Each event is read through the event's own loaders; the transport clears it through the
disclosure step once its whole selection has resolved.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from gateway.authz.context import LiveInfo
from gateway.data.live import follow_consultation
from gateway.errors import BadUserInput
from gateway.ids import decode_global_id
from resolvers.consultation import Consultation

__all__ = ["ConsultationEvent", "Subscription"]


@strawberry.type(
    description="A change of a consultation: its state when you subscribe "
    "(`current`), then `updated` or `recording-added`."
)
class ConsultationEvent:
    kind: str
    consultation: Consultation | None


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Events of one of your consultations, until you may no "
        "longer see it or your token expires."
    )
    async def consultation_events(
        self, info: LiveInfo, consultation_id: strawberry.ID
    ) -> AsyncGenerator[ConsultationEvent, None]:
        kind, pk = decode_global_id(consultation_id)
        if kind != "Consultation":
            raise BadUserInput("Consultation not found")
        async for event, row in follow_consultation(info.context, pk):
            yield ConsultationEvent(kind=event, consultation=Consultation.from_row(row))
