"""The schema's enums: a consultation's mode and status, and the caller's role."""

from __future__ import annotations

from enum import Enum

import strawberry

from gateway import identity

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


# The principal's role, exposed as it is: one enum for the engine and the schema (strawberry.enum
# marks the class itself, so the name is the engine's class for the type checker too).
Role = identity.Role
strawberry.enum(Role, name="Role")
