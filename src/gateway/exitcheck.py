"""Layer 4: before a response leaves, every patient in its ledger must be one the caller may see.

The authorized set is worked out independently of the loaders: for a patient it is their own id;
for a clinician it is asked of the database by a query of its own (consultations they conducted,
active break-glass grants). A mismatch withholds the whole response, counts a metric and writes an
alert to the audit trail. It should never fire: it is the tripwire for layers 1 to 3.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from gateway import queries
from gateway.audit import AccessEventWriter
from gateway.errors import ResponseWithheld
from gateway.identity import Principal, Role
from gateway.ledger import Ledger
from gateway.metrics import Metrics

__all__ = ["ExitCheck"]

log = logging.getLogger("gateway.exitcheck")

Fetch = Callable[..., Awaitable[list[Any]]]


class ExitCheck:
    def __init__(self, fetch: Fetch, audit: AccessEventWriter, metrics: Metrics) -> None:
        self._fetch = fetch
        self._audit = audit
        self._metrics = metrics

    async def authorized(self, principal: Principal, owners: set[UUID]) -> set[UUID]:
        if principal.role is Role.PATIENT:
            return owners & {principal.actor_id}
        if principal.role is Role.CLINICIAN:
            rows = await self._fetch(
                queries.AUTHORIZED_PATIENTS, principal.role.value, principal.actor_id, list(owners)
            )
            return {row["x"] for row in rows}
        return set()

    async def verify(self, principal: Principal, ledger: Ledger, request_id: str) -> None:
        """Raise ResponseWithheld if the response would disclose a foreign patient's data."""
        owners = ledger.owners()
        if not owners:
            return
        foreign = owners - await self.authorized(principal, owners)
        if not foreign:
            return
        self._metrics.exit_check_trips.inc()
        log.critical(
            "exit check tripped: response withheld",
            extra={"request_id": request_id, "subject": principal.subject},
        )
        events = [
            AccessEventWriter.event(
                principal,
                request_id,
                "alert",
                patient_id=owner,
                objects=[
                    {"type": type_name, "id": str(object_id), "fields": []}
                    for type_name, object_id, object_owner in ledger.objects
                    if object_owner == owner
                ],
                detail={"reason": "exit-check", "layer": 4},
            )
            for owner in sorted(foreign)
        ]
        try:
            await self._audit.write(events)
        except Exception:
            log.exception("could not record exit-check alert", extra={"request_id": request_id})
        raise ResponseWithheld("Response withheld")
