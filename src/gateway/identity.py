"""Who is calling: the principal every request carries once its token has been verified."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

__all__ = ["Principal", "Role"]


class Role(StrEnum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    SUPPORT = "support"
    PARTNER = "partner"
    AUDITOR = "auditor"


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
