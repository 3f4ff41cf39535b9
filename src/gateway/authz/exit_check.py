"""Layer 4's question: which patients in a ledger may this caller not hold?

The authorized set is worked out independently of the loaders, per type, from the type's row
scope for the caller's role in the policy table: a patient holds only their own id; a clinician
holds patients they conducted a consultation with or hold an active break-glass grant for; a
partner holds patients whose active consent covers the type's scope; support and auditors hold
every patient's rows of the types granted to everyone. The database questions are statements of
their own, not the loaders'. What to do with the answer is the disclosure step's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from gateway.data import queries
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.policy.table import RowScope, row_scope, type_policy

__all__ = ["ExitCheck"]

Fetch = Callable[..., Awaitable[list[Any]]]


class ExitCheck:
    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

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
                policy = type_policy(type_name)
                needs = policy.smart_scope if policy is not None else None
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
