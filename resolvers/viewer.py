"""The authenticated caller (``Query.me``): their subject, role, scopes and own record."""

from __future__ import annotations

from uuid import UUID

import strawberry

from gateway.authz.context import Info
from gateway.authz.field_check import policy_field
from resolvers.clinician import Clinician
from resolvers.enums import Role
from resolvers.patient import Patient

__all__ = ["Viewer"]


@strawberry.type(description="The authenticated caller.")
class Viewer:
    pk: strawberry.Private[UUID | None]
    owner: strawberry.Private[UUID | None]
    role_of: strawberry.Private[Role]
    subject: str | None = policy_field()

    @policy_field(description="The token's scopes (partners).")
    def scopes(self, info: Info) -> list[str] | None:
        return sorted(info.context.principal.scopes)

    @policy_field()
    def role(self) -> Role | None:
        return self.role_of

    @policy_field(description="The patient record of a patient caller.")
    async def patient(self, info: Info) -> Patient | None:
        principal = info.context.principal
        if principal.patient_id is None:
            return None
        row = await info.context.loaders.patient.load(principal.patient_id)
        return Patient.maybe(row)

    @policy_field(description="The clinician record of a clinician caller.")
    async def clinician(self, info: Info) -> Clinician | None:
        principal = info.context.principal
        if principal.clinician_id is None:
            return None
        row = await info.context.loaders.clinician.load(principal.clinician_id)
        return Clinician.maybe(row)
