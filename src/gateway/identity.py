"""Who is calling: the principal every request carries once its token has been verified."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple
from uuid import UUID

__all__ = ["Principal", "Role", "SqlScope"]


class Role(StrEnum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    SUPPORT = "support"
    PARTNER = "partner"
    AUDITOR = "auditor"


class SqlScope(NamedTuple):
    """The caller as the ``api`` functions take it (data/queries.py): the role, the patient,
    clinician or partner it acts for, and the token's scopes, sorted. The scoped reads take all
    three first; the changes of access and the consents list take the first two."""

    role: str
    actor: UUID | None
    scopes: list[str]


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller. Role and ``actor_id`` come from the accounts table by (issuer, subject),
    never from a claim the client chose.

    ``actor_id`` is the patient, clinician or partner the account acts for (None for support and
    auditors).
    """

    issuer: str
    subject: str
    role: Role
    actor_id: UUID | None
    expires_at: float
    client_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    developer: bool = False  # may send free-form GraphQL documents in production

    @property
    def patient_id(self) -> UUID | None:
        return self.actor_id if self.role is Role.PATIENT else None

    @property
    def clinician_id(self) -> UUID | None:
        return self.actor_id if self.role is Role.CLINICIAN else None

    def sql_scope(self) -> SqlScope:
        """This caller as SQL arguments: the one place a principal becomes them, for the
        loaders, the changes of access and the audit writer alike."""
        return SqlScope(self.role.value, self.actor_id, sorted(self.scopes))
