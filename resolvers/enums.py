from __future__ import annotations

from enum import Enum

import strawberry

__all__ = ["ConsultationMode", "ConsultationStatus", "Role"]


@strawberry.enum
class ConsultationMode(Enum):
    AUDIO = "AUDIO"
    VIDEO = "VIDEO"


@strawberry.enum
class ConsultationStatus(Enum):
    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class Role(Enum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    SUPPORT = "support"
    PARTNER = "partner"
    AUDITOR = "auditor"
