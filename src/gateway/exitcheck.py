"""Layer 4: before a response leaves, every patient in its ledger must be one the caller may see.

The authorized set is worked out independently of the loaders, per type, from the type's row
scope for the caller's role in the policy table: a patient holds only their own id; a clinician
holds patients they conducted a consultation with or hold an active break-glass grant for; a
partner holds patients whose active consent covers the type's scope; support and auditors hold
every patient's rows of the types granted to everyone. The database questions are queries of
their own, not the loaders'. A mismatch withholds the whole response, counts a metric and writes an
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
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.metrics import Metrics
from gateway.policy import RowScope, row_scope, type_policy

__all__ = ["ExitCheck"]

log = logging.getLogger("gateway.exitcheck")

Fetch = Callable[..., Awaitable[list[Any]]]


class ExitCheck:
    def __init__(self, fetch: Fetch, audit: AccessEventWriter, metrics: Metrics) -> None:
        self._fetch = fetch
        self._audit = audit
        self._metrics = metrics

    async def foreign_owners(self, principal: Principal, ledger: Ledger) -> set[UUID]:
        """Owners of objects in the ledger that this caller may not hold, judged per type by the
        type's row scope for the caller's role."""
        foreign: set[UUID] = set()
        conducted: set[UUID] = set()
        consented: dict[str, set[UUID]] = {}
        seen = {(t, o) for t, _, o in ledger.objects if o is not None}
        seen.update((t, o) for t, _, o, _ in ledger.reads if o is not None)
        for type_name, owner in seen:
            scope = row_scope(type_name, principal.role)
            if scope is RowScope.EVERYONE:
                continue
            if scope is RowScope.OWN:
                if owner != principal.actor_id:
                    foreign.add(owner)
            elif scope is RowScope.CONDUCTED:
                conducted.add(owner)
            elif scope is RowScope.CONSENTED:
                needs = type_policy(type_name).smart_scope
                consented.setdefault(needs or "", set()).add(owner)
            else:
                foreign.add(owner)
        if conducted:
            foreign |= conducted - await self._ask(principal, "", conducted)
        for needs, owners in consented.items():
            foreign |= owners - await self._ask(principal, needs, owners)
        return foreign

    async def _ask(self, principal: Principal, needs: str, owners: set[UUID]) -> set[UUID]:
        rows = await self._fetch(
            queries.AUTHORIZED_PATIENTS,
            principal.role.value,
            principal.actor_id,
            sorted(principal.scopes),
            needs,
            list(owners),
        )
        return {row["x"] for row in rows}

    async def verify(self, principal: Principal, ledger: Ledger, request_id: str) -> None:
        """Raise ResponseWithheld if the response would disclose a foreign patient's data."""
        foreign = await self.foreign_owners(principal, ledger)
        if not foreign:
            return
        self._metrics.exit_check_trips.inc()
        log.critical(
            "exit check tripped: response withheld",
            extra={
                "request_id": request_id,
                "subject": principal.subject,
                "role": principal.role.value,
                "foreign_patients": len(foreign),
            },
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
