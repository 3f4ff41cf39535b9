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


# The principal's role, exposed as it is: one enum for the engine and the schema.
Role = strawberry.enum(identity.Role, name="Role")
