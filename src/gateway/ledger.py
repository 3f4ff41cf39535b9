"""The per-request disclosure ledger: what was read, of which object, owned by which patient.

The field permission class writes a line for every field read it allows (and every denial); the
loaders write a line for every row they hand out. Owners always come from database rows. At the
end of the request the exit check verifies every owner here, and the audit writer stores the same
lines, so what was checked, audited and sent is one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

Key = UUID | int

__all__ = ["Denial", "Key", "Ledger"]


@dataclass(frozen=True, slots=True)
class Denial:
    type_name: str
    object_id: Key | None
    owner: UUID | None
    field: str
    rule: str


@dataclass(slots=True)
class Ledger:
    # (type, object id, owner patient) of every row a loader returned.
    objects: list[tuple[str, Key, UUID | None]] = field(default_factory=list)
    # (type, object id, owner patient, field) of every allowed field read.
    reads: list[tuple[str, Key | None, UUID | None, str]] = field(default_factory=list)
    denials: list[Denial] = field(default_factory=list)
    # patient -> break-glass reason, for rows a clinician saw under an emergency grant.
    break_glass: dict[UUID, str] = field(default_factory=dict)
    # When explaining: (path, type, field, "allowed" | "denied", rule), for every field check.
    explanations: list[tuple[str, str, str, str, str]] | None = None

    def record_object(self, type_name: str, object_id: Key, owner: UUID | None) -> None:
        self.objects.append((type_name, object_id, owner))

    def record_read(
        self, type_name: str, object_id: Key | None, owner: UUID | None, field_name: str
    ) -> None:
        self.reads.append((type_name, object_id, owner, field_name))

    def record_denial(self, denial: Denial) -> None:
        self.denials.append(denial)

    def explain(self, path: str, type_name: str, field_name: str, allowed: bool, rule: str) -> None:
        if self.explanations is not None:
            decision = "allowed" if allowed else "denied"
            self.explanations.append((path, type_name, field_name, decision, rule))
