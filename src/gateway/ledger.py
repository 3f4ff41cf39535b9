"""The per-request disclosure ledger: every row handed out and every field decision, with its owner.

Written only through its methods, the owner patient always taken from a database row:

- ``record_object``: a row a loader handed out, or that a change of access returned, with the
  break-glass reason it was read under;
- ``record_field``: one decision of the field gate (``authz.field_check.decide``), a read or a
  denial for a rule, where it is made field by field: graphql-core's field permission
  (``check_field``), a compiled plan's object run without generated code or with a field denied,
  and the media endpoint's read of a recording's media;
- ``record_reads``: the reads of one object's fields in one entry, where a compiled plan's
  generated code found every field allowed (all of them, or those reached before an error);
- ``explain``: the rule behind each decision, when a development request asks.

The disclosure step seals the ledger, exit-checks every owner in it and has the audit writer store
the same lines, so what was checked, audited and sent is one list. A sealed ledger records
nothing more: work an error left running in the background (a sibling of the error, cancelled or
settling) may still load rows, but nothing it resolves is sent, and the check, the audit and the
alerts must all read the same lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


class Ledger:
    __slots__ = ("_break_glass", "_denials", "_objects", "_reads", "_sealed", "explanations")

    def __init__(self, *, explaining: bool = False) -> None:
        # (type, object id, owner patient) of every row a loader returned.
        self._objects: list[tuple[str, Key, UUID | None]] = []
        # (type, object id, owner patient, fields) of every allowed field read, by object.
        self._reads: list[tuple[str, Key | None, UUID | None, tuple[str, ...]]] = []
        self._denials: list[Denial] = []
        # patient -> break-glass reason, for rows a clinician saw under an emergency grant.
        self._break_glass: dict[UUID, str] = {}
        # When explaining: (path, type, field, "allowed" | "denied", rule), for every field check.
        self.explanations: list[tuple[str, str, str, str, str]] | None = [] if explaining else None
        self._sealed = False

    def seal(self) -> None:
        """Record nothing more (the disclosure step reads it from here on)."""
        self._sealed = True

    @property
    def objects(self) -> Sequence[tuple[str, Key, UUID | None]]:
        return self._objects

    @property
    def reads(self) -> Sequence[tuple[str, Key | None, UUID | None, str]]:
        """Every allowed field read: (type, object id, owner patient, field)."""
        return [(t, key, owner, name) for t, key, owner, names in self._reads for name in names]

    @property
    def read_objects(self) -> Sequence[tuple[str, Key | None, UUID | None, tuple[str, ...]]]:
        """The same reads by object: (type, object id, owner patient, fields), an object
        possibly more than once."""
        return self._reads

    @property
    def denials(self) -> Sequence[Denial]:
        return self._denials

    @property
    def break_glass(self) -> Mapping[UUID, str]:
        return self._break_glass

    def record_object(
        self,
        type_name: str,
        object_id: Key,
        owner: UUID | None,
        break_glass_reason: str | None = None,
    ) -> None:
        """A row handed out, with its owner and, when it was read under break-glass, the
        reason the clinician gave."""
        if self._sealed:
            return
        self._objects.append((type_name, object_id, owner))
        if break_glass_reason is not None and owner is not None:
            self._break_glass[owner] = break_glass_reason

    def record_field(
        self,
        type_name: str,
        object_id: Key | None,
        owner: UUID | None,
        field_name: str,
        reason: str | None,
    ) -> bool:
        """One field decision of the gate: a read when ``reason`` is None (returns True), else a
        denial for that reason (returns False). Once sealed, decides without recording."""
        if self._sealed:
            return reason is None
        if reason is None:
            self._reads.append((type_name, object_id, owner, (field_name,)))
            return True
        self._denials.append(Denial(type_name, object_id, owner, field_name, reason))
        return False

    def record_reads(
        self, type_name: str, object_id: Key | None, owner: UUID | None, fields: tuple[str, ...]
    ) -> None:
        """Reads of ``fields`` of one object, each allowed by the gate (``record_field`` with no
        reason, for all of them at once). Once sealed, records nothing."""
        if not self._sealed:
            self._reads.append((type_name, object_id, owner, fields))

    def explain(self, path: str, type_name: str, field_name: str, allowed: bool, rule: str) -> None:
        if self.explanations is not None:
            decision = "allowed" if allowed else "denied"
            self.explanations.append((path, type_name, field_name, decision, rule))
