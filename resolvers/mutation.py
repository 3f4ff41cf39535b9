"""The root mutation: arguments, an engine call, a domain object.

Who may call each is the policy table's (``MUTATIONS``), checked by ``MutationPolicy`` before the
resolver runs.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import strawberry

from gateway.authz.context import Info
from gateway.authz.field_check import policy_mutation
from gateway.errors import BadUserInput
from gateway.ids import decode_global_id
from resolvers.break_glass import BreakGlassGrant
from resolvers.consent import Consent, ConsentRequest
from resolvers.patient import Patient

__all__ = ["Mutation"]


def _pk(global_id: str, type_name: str) -> UUID:
    decoded_type, pk = decode_global_id(global_id)
    if decoded_type != type_name:
        raise BadUserInput(f"Expected the ID of a {type_name}")
    return pk


@strawberry.type
class Mutation:
    @policy_mutation(
        description="Let a partner read parts of your record until expiresAt "
        "(replaces any consent you gave that partner)."
    )
    async def grant_consent(
        self,
        info: Info,
        partner_id: strawberry.ID,
        scopes: list[str],
        expires_at: datetime,
    ) -> Consent:
        row = await info.context.changes.grant_consent(
            _pk(partner_id, "Partner"), scopes, expires_at
        )
        return Consent.from_row(row)

    @policy_mutation(description="Withdraw a consent; effective from the next request.")
    async def revoke_consent(self, info: Info, id: strawberry.ID) -> Consent | None:
        row = await info.context.changes.revoke_consent(_pk(id, "Consent"))
        return Consent.maybe(row)

    @policy_mutation(
        description="Open a partner's request for your consent (the consent page): the partner, "
        "its redirect URI and the scopes are checked against the partner's registration."
    )
    async def request_consent(
        self,
        info: Info,
        partner_id: strawberry.ID,
        scopes: list[str],
        redirect_uri: str,
        state: str,
    ) -> ConsentRequest:
        row = await info.context.changes.request_consent(
            _pk(partner_id, "Partner"), scopes, redirect_uri, state
        )
        return ConsentRequest.from_row(row)

    @policy_mutation(
        description="Approve (grant exactly the scopes asked for) or decline a consent request, "
        "once."
    )
    async def answer_consent_request(
        self, info: Info, id: strawberry.ID, approve: bool
    ) -> ConsentRequest:
        row, code = await info.context.changes.answer_consent_request(
            _pk(id, "ConsentRequest"), approve
        )
        return ConsentRequest.from_row(row, code)

    @policy_mutation(
        description="The patient who approved a consent request (partners): the code the "
        "patient came back with and the state your session kept for that link, redeemed once, "
        "within ten minutes. What the patient's fields show follows the consent, as everywhere."
    )
    async def redeem_consent_code(self, info: Info, code: str, state: str) -> Patient | None:
        patient = await info.context.changes.redeem_consent_code(code, state)
        return Patient.maybe(await info.context.loaders.patient.load(patient))

    @policy_mutation(
        description="Open emergency access to a patient's record (clinicians). "
        "Every read under it is audited and shown to the patient."
    )
    async def open_break_glass(
        self,
        info: Info,
        patient_id: strawberry.ID,
        reason: str,
        minutes: int | None = None,
    ) -> BreakGlassGrant:
        row = await info.context.changes.open_break_glass(
            _pk(patient_id, "Patient"), reason, minutes
        )
        return BreakGlassGrant.from_row(row)
