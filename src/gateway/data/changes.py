"""Changes of access by the people they concern, each written with its audit event.

A patient grants and revokes consent to a partner, or answers a partner's consent request on the
consent page; a clinician opens break-glass access to a patient. Each is validated here and made
through an ``api`` function under the caller's scope (row-level security checks it again), which
writes its audit event in the same statement: no change without its record.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from gateway.config import Settings
from gateway.data import queries
from gateway.data.edge import Fetch
from gateway.errors import BadUserInput, Forbidden
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.policy import scopes
from gateway.policy.table import may_call, mutation_right

__all__ = ["AccessChanges"]

# A refusal of the database a person should read (raised with this SQLSTATE by the api
# functions of the consent page, sql/consent.sql).
_BAD_INPUT = "GW400"
_LONGEST_STATE = 512
_LONGEST_URI = 2048


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


class AccessChanges:
    def __init__(
        self,
        fetch: Fetch,
        principal: Principal,
        ledger: Ledger,
        request_id: str,
        settings: Settings,
    ) -> None:
        self._fetch = fetch
        self._principal = principal
        self._ledger = ledger
        self._request_id = request_id
        self._settings = settings

    def _require(self, mutation: str) -> None:
        """The policy table's mutation rights, read again in the data layer (the field permission
        read them first; the api function checks the role a third time)."""
        if not may_call(mutation, self._principal.role):
            right = mutation_right(mutation)
            raise Forbidden(f"Only a {right.describe() if right else 'nobody'} may do this")

    async def _call(self, statement: str, *args: Any, missing: str) -> list[Any]:
        who = orjson.dumps(
            {
                "request_id": self._request_id,
                "issuer": self._principal.issuer,
                "subject": self._principal.subject,
                "client_id": self._principal.client_id,
            }
        ).decode()
        scope = self._principal.sql_scope()
        try:
            return await self._fetch(statement, who, scope.role, scope.actor, *args)
        except asyncpg.ForeignKeyViolationError:
            raise BadUserInput(missing) from None
        except asyncpg.PostgresError as error:
            if error.sqlstate == _BAD_INPUT:
                raise BadUserInput(error.message) from None
            raise

    async def grant_consent(self, partner: UUID, granted: list[str], expires_at: datetime) -> Any:
        self._require("grantConsent")
        unknown = sorted(set(granted) - set(scopes.ALL))
        if not granted or unknown:
            raise BadUserInput(f"'scopes' must be among {', '.join(scopes.ALL)}")
        if expires_at.tzinfo is None:
            raise BadUserInput("'expiresAt' needs a time zone")
        now = datetime.now(UTC)
        limit = now + timedelta(days=self._settings.consent_max_days)
        if not now < expires_at <= limit:
            raise BadUserInput(
                f"'expiresAt' must be in the future and within {self._settings.consent_max_days} "
                "days"
            )
        rows = await self._call(
            queries.GRANT_CONSENT, partner, granted, expires_at, missing="No such partner"
        )
        row = rows[0]
        self._ledger.record_object("Consent", row["id"], row["patient_id"])
        return row

    async def revoke_consent(self, consent: UUID) -> Any | None:
        self._require("revokeConsent")
        rows = await self._call(queries.REVOKE_CONSENT, consent, missing="No such consent")
        if not rows:
            return None
        row = rows[0]
        self._ledger.record_object("Consent", row["id"], row["patient_id"])
        return row

    async def request_consent(
        self, partner: UUID, asked: list[str], redirect_uri: str, state: str
    ) -> Any:
        """A partner's request, as the consent page received it, checked against the partner's
        registration (the database's half) and kept for the patient's one answer."""
        self._require("requestConsent")
        unknown = sorted(set(asked) - set(scopes.ALL))
        if not asked or unknown:
            raise BadUserInput(f"'scopes' must be among {', '.join(scopes.ALL)}")
        if not redirect_uri or len(redirect_uri) > _LONGEST_URI:
            raise BadUserInput(f"'redirectUri' must be 1 to {_LONGEST_URI} characters")
        if not 1 <= len(state) <= _LONGEST_STATE:
            # The partner's check that the patient who returns is the one it sent: required.
            raise BadUserInput(f"'state' must be 1 to {_LONGEST_STATE} characters")
        expires_at = datetime.now(UTC) + timedelta(days=self._settings.consent_request_days)
        rows = await self._call(
            queries.OPEN_CONSENT_REQUEST,
            partner,
            asked,
            redirect_uri,
            state,
            expires_at,
            missing="No such partner",
        )
        if not rows:
            raise Forbidden("Only a patient may do this")
        return self._disclosed(rows[0])

    async def answer_consent_request(self, request: UUID, approve: bool) -> tuple[Any, str | None]:
        """(the answered request, the one-time code an approval sends the partner back with;
        the database keeps its SHA-256 only)."""
        self._require("answerConsentRequest")
        code = secrets.token_urlsafe(32) if approve else None
        rows = await self._call(
            queries.ANSWER_CONSENT_REQUEST,
            request,
            approve,
            _digest(code) if code else None,
            missing="No such consent request",
        )
        if not rows:
            raise BadUserInput("No such consent request")
        return self._disclosed(rows[0]), code

    async def redeem_consent_code(self, code: str, state: str) -> UUID:
        """The patient who approved the request the code was issued for (the partner's own
        request, with the state of the session that sent the patient, once, within ten
        minutes)."""
        self._require("redeemConsentCode")
        if not 1 <= len(code) <= _LONGEST_STATE or not 1 <= len(state) <= _LONGEST_STATE:
            raise BadUserInput("This code is not valid: unknown, used, or older than ten minutes")
        rows = await self._call(
            queries.REDEEM_CONSENT_CODE, _digest(code), state, missing="No such code"
        )
        if not rows:
            raise Forbidden("Only a partner may do this")
        patient: UUID = rows[0]["patient_id"]
        return patient

    def _disclosed(self, row: Any) -> Any:
        self._ledger.record_object("ConsentRequest", row["id"], row["patient_id"])
        return row

    async def open_break_glass(self, patient: UUID, reason: str, minutes: int | None) -> Any:
        self._require("openBreakGlass")
        settings = self._settings
        reason = reason.strip()
        if len(reason) < settings.break_glass_min_reason_length:
            raise BadUserInput(
                f"'reason' must be at least {settings.break_glass_min_reason_length} characters"
            )
        minutes = settings.break_glass_default_minutes if minutes is None else minutes
        if not 1 <= minutes <= settings.break_glass_max_minutes:
            raise BadUserInput(
                f"'minutes' must be between 1 and {settings.break_glass_max_minutes}"
            )
        rows = await self._call(
            queries.OPEN_BREAK_GLASS, patient, reason, minutes, missing="No such patient"
        )
        row = rows[0]
        self._ledger.record_object("BreakGlassGrant", row["id"], row["patient_id"], row["reason"])
        return row
