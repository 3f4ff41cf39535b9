"""Layer 4's question: which patients in a ledger the caller may not hold.

The authorized set is worked out independently of the loaders, per type, from the type's row
scope for the caller's role in the policy table: a patient holds only their own id; a clinician
holds patients they conducted a consultation with or hold an active break-glass grant for; a
partner holds patients whose active consent covers the type's scope; support and auditors hold
every patient's rows of the types granted to everyone. The database questions are statements of
their own (``api.authorized_patients``, called by ``api.record_access_events_if_authorized``),
not the loaders'. ``questions`` judges what needs no database and says what to ask it; the
disclosure step sends those questions with the audit write, in one statement that stores the
events only if every answer holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.policy.table import RowScope, row_scope, type_policy

__all__ = ["ExitCheck", "ExitQuestions"]


@dataclass(frozen=True, slots=True)
class ExitQuestions:
    """Owners in a ledger the caller may not hold, as far as that is known without the database,
    and what to ask it about the rest: (the SMART scope the type needs, or "", the owners)."""

    foreign: set[UUID] = field(default_factory=set)
    asks: list[tuple[str, list[UUID]]] = field(default_factory=list)

    def as_json(self) -> list[dict[str, Any]]:
        """The asks as ``api.record_access_events_if_authorized`` takes them."""
        return [{"needs": needs, "candidates": owners} for needs, owners in self.asks]


class ExitCheck:
    def questions(self, principal: Principal, ledger: Ledger) -> ExitQuestions:
        """Judge every owner in the ledger per type, by the type's row scope for the caller's
        role: a patient's own and everyone-scoped rows here, care and consent by the database."""
        foreign: set[UUID] = set()
        conducted: set[UUID] = set()
        consented: dict[str, set[UUID]] = {}
        seen = {(t, o) for t, _, o in ledger.objects if o is not None}
        seen.update((t, o) for t, _, o, _ in ledger.read_objects if o is not None)
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
        asks = [("", sorted(conducted))] if conducted else []
        asks += [(needs, sorted(owners)) for needs, owners in sorted(consented.items())]
        return ExitQuestions(foreign, asks)
