"""The authenticator: an ``Authorization`` header, its verified claims, their account, a Principal.

The role and the party the caller acts for come from the accounts table by (issuer, subject),
never from a claim the client chose. The row read is remembered (``GATEWAY_ACCOUNT_CACHE_SIZE``
accounts, least recently used out first) only while the gateway listens for changes of the
accounts and partners (``data.account_changes``) and nothing has changed since it was read: a
change ends every remembered account at once, and while the listener is down every request
reads the table.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from uuid import UUID

from gateway.authn.tokens import TokenVerifier
from gateway.data import queries
from gateway.data.account_changes import AccountChanges
from gateway.data.edge import Fetch
from gateway.errors import AuthenticationError
from gateway.identity import Principal, Role

__all__ = ["Authenticator", "account_principal"]


class Authenticator:
    """Turns an ``Authorization`` header into a Principal, or raises AuthenticationError."""

    def __init__(
        self,
        verifier: TokenVerifier,
        fetch: Fetch,
        changes: AccountChanges | None = None,
        cache_size: int = 0,
    ) -> None:
        self._verifier = verifier
        self._fetch = fetch
        self._changes = changes if cache_size > 0 else None
        self._capacity = cache_size
        self._remembered: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._generation = -1  # the changes' generation the remembered rows were read in

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
        changed or removed account takes effect at once (remembered rows end with the change's
        notification)."""
        row = await self._row(issuer, subject)
        if row is None:
            raise AuthenticationError("Token invalid")
        return account_principal(
            row,
            issuer=issuer,
            subject=subject,
            expires_at=expires_at,
            client_id=client_id,
            scopes=scopes,
        )

    async def _row(self, issuer: str, subject: str) -> Any:
        changes = self._changes
        if changes is None or not changes.listening:
            rows = await self._fetch(queries.ACCOUNT_FOR, issuer, subject)
            return rows[0] if rows else None
        generation = changes.generation
        if generation != self._generation:
            self._remembered.clear()
            self._generation = generation
        key = (issuer, subject)
        row = self._remembered.get(key)
        if row is not None:
            self._remembered.move_to_end(key)
            return row
        rows = await self._fetch(queries.ACCOUNT_FOR, issuer, subject)
        if not rows:
            return None
        # Kept only if nothing changed while it was read, and the listener is still up.
        if changes.listening and changes.generation == generation == self._generation:
            self._remembered[key] = rows[0]
            if len(self._remembered) > self._capacity:
                self._remembered.popitem(last=False)
        return rows[0]


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
