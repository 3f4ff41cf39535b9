"""Who is this? An ``Authorization`` header -> verified claims -> account -> Principal.

The role and the party the caller acts for come from the accounts table by (issuer, subject),
never from a claim the client chose.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from gateway.authn.tokens import TokenVerifier
from gateway.data import queries
from gateway.errors import AuthenticationError
from gateway.identity import Principal, Role

__all__ = ["Authenticator", "account_principal"]

Fetch = Callable[..., Awaitable[list[Any]]]


class Authenticator:
    """Turns an ``Authorization`` header into a Principal, or raises AuthenticationError."""

    def __init__(self, verifier: TokenVerifier, fetch: Fetch) -> None:
        self._verifier = verifier
        self._fetch = fetch

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthenticationError("Authentication required", credentials_present=False)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Bearer token required", credentials_present=False)
        claims = await self._verifier.verify(token.strip())
        scope = claims.get("scope")
        return await self.account(
            issuer=claims["iss"],
            subject=claims["sub"],
            expires_at=float(claims["exp"]),
            client_id=claims.get("azp") or claims.get("client_id"),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        )

    async def account(
        self,
        *,
        issuer: str,
        subject: str,
        expires_at: float,
        client_id: str | None = None,
        scopes: frozenset[str] = frozenset(),
    ) -> Principal:
        """The principal of a verified (issuer, subject): its role and party from the accounts
        table as they are now. A playback cookie comes back through here on each request, so a
        changed or removed account takes effect at once."""
        rows = await self._fetch(queries.ACCOUNT_FOR, issuer, subject)
        if not rows:
            raise AuthenticationError("Token invalid")
        return account_principal(
            rows[0],
            issuer=issuer,
            subject=subject,
            expires_at=expires_at,
            client_id=client_id,
            scopes=scopes,
        )


def account_principal(
    row: Any,
    *,
    issuer: str,
    subject: str,
    expires_at: float,
    client_id: str | None = None,
    scopes: frozenset[str] = frozenset(),
) -> Principal:
    """The principal of an ``api.account_for`` row: its role and the party it acts for."""
    actor: UUID | None = row["patient_id"] or row["clinician_id"] or row["partner_id"]
    return Principal(
        issuer=issuer,
        subject=subject,
        role=Role(row["role"]),
        actor_id=actor,
        expires_at=expires_at,
        client_id=client_id,
        scopes=scopes,
        developer=bool(row["developer"]),
    )
