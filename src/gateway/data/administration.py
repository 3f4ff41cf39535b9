"""Accounts and partners, changed by an operator (``gateway accounts``, ``gateway partners``).

Every change runs in one transaction with its audit event (kind ``account-changed`` or
``partner-changed``: the operator as subject, issuer ``urn:consultation-gateway:cli``, role
``operator``, and in ``detail`` the action with the row before and after), so that a change is
never made without its record, nor recorded without being made. Nothing is deleted: an account
or a partner is disabled, and its tokens are refused from the next request on (``api.account_for``,
migration 0013). Every input is checked here, with a message that says what to do.

The commands run as a role that owns the schema; they refuse a database whose migrations are not
exactly this gateway's (:func:`check_migrated`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg

from gateway.data.definitions import definitions_current
from gateway.data.migrate import available_migrations, released_checksums
from gateway.errors import ConfigurationError
from gateway.identity import Role
from gateway.policy import scopes as smart

__all__ = [
    "AccountChange",
    "AdminError",
    "add_account",
    "add_partner",
    "change_account",
    "change_partner",
    "check_migrated",
    "disable_account",
    "disable_partner",
    "list_accounts",
    "list_partners",
]

CLI_ISSUER = "urn:consultation-gateway:cli"
_BINDING = {Role.PATIENT: "patient_id", Role.CLINICIAN: "clinician_id", Role.PARTNER: "partner_id"}
_PARTIES = {
    "patient_id": "data.patients",
    "clinician_id": "data.clinicians",
    "partner_id": "data.partners",
}


class AdminError(Exception):
    """A change refused, with the reason an operator can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class AccountChange:
    """What ``change_account`` changes (None: leave as it is)."""

    developer: bool | None = None
    enable: bool = False


async def check_migrated(connection: asyncpg.Connection) -> None:
    """Refuse a database whose applied migrations are not exactly this gateway's."""
    try:
        rows = await connection.fetch("select version, checksum from public.schema_migrations")
    except asyncpg.UndefinedTableError:
        raise ConfigurationError(
            "the database has never been migrated: run `gateway migrate` first"
        ) from None
    applied = {row["version"]: row["checksum"] for row in rows}
    known = {migration.version: migration.checksum for migration in available_migrations()}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise ConfigurationError(
            f"the database has migrations this gateway does not know ({', '.join(unknown)}): "
            "use the gateway version that migrated it"
        )
    pending = sorted(set(known) - set(applied))
    if pending:
        raise ConfigurationError(
            f"the database lacks migrations {', '.join(pending)}: run `gateway migrate` first"
        )
    released = released_checksums()
    if any(applied[v] == released.get(v, ("", ""))[0] for v in applied):
        raise ConfigurationError(
            "the database was migrated by an earlier release: run `gateway migrate` first"
        )
    changed = sorted(v for v in applied if applied[v] != known[v])
    if changed:
        raise ConfigurationError(
            f"the database's migrations {', '.join(changed)} differ from this gateway's"
        )
    if not await definitions_current(connection):
        raise ConfigurationError(
            "the database's functions, policies or privileges differ from this gateway's "
            "definitions: run `gateway migrate`"
        )


# --- accounts ------------------------------------------------------------------------------------


def _account(row: Any) -> dict[str, Any]:
    party = row["patient_id"] or row["clinician_id"] or row["partner_id"]
    return {
        "issuer": row["issuer"],
        "subject": row["subject"],
        "role": row["role"],
        "party": str(party) if party else None,
        "developer": row["developer"],
        "disabled_at": row["disabled_at"].isoformat() if row["disabled_at"] else None,
    }


async def _record(
    connection: asyncpg.Connection,
    kind: str,
    operator: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> None:
    detail = {"action": action, "before": before, "after": after}
    await connection.execute(
        "insert into data.access_events (request_id, kind, issuer, subject, role, detail) "
        "values ($1, $2, $3, $4, 'operator', $5::jsonb)",
        f"admin-{uuid.uuid4()}",
        kind,
        CLI_ISSUER,
        operator,
        json.dumps(detail, sort_keys=True),
    )


async def _one_account(connection: asyncpg.Connection, issuer: str, subject: str) -> Any:
    row = await connection.fetchrow(
        "select * from data.accounts where issuer = $1 and subject = $2 for update",
        issuer,
        subject,
    )
    if row is None:
        raise AdminError(f"no account for issuer {issuer!r} and subject {subject!r}")
    return row


async def add_account(
    connection: asyncpg.Connection,
    *,
    operator: str,
    issuer: str,
    subject: str,
    role: str,
    party: UUID | None,
    developer: bool = False,
) -> dict[str, Any]:
    """A new account; ``party`` is the patient, clinician or partner it acts for (none for
    support and auditors)."""
    if not issuer.strip() or not subject.strip():
        raise AdminError("an account needs a non-empty issuer and subject")
    try:
        as_role = Role(role)
    except ValueError:
        raise AdminError(
            f"unknown role {role!r}: one of {', '.join(r.value for r in Role)}"
        ) from None
    column = _BINDING.get(as_role)
    if column is None and party is not None:
        raise AdminError(f"a {role} account acts for no patient, clinician or partner")
    if column is not None and party is None:
        raise AdminError(f"a {role} account needs the {column.removesuffix('_id')} it acts for")
    async with connection.transaction():
        if column is not None and not await connection.fetchval(
            f"select exists (select 1 from {_PARTIES[column]} where id = $1)",
            party,
        ):
            raise AdminError(f"no {column.removesuffix('_id')} with id {party}")
        if await connection.fetchval(
            "select exists (select 1 from data.accounts where issuer = $1 and subject = $2)",
            issuer,
            subject,
        ):
            raise AdminError(f"an account for issuer {issuer!r} and subject {subject!r} exists")
        values: dict[str, UUID | None] = {
            "patient_id": None,
            "clinician_id": None,
            "partner_id": None,
        }
        if column is not None:
            values[column] = party
        row = await connection.fetchrow(
            "insert into data.accounts (issuer, subject, role, patient_id, clinician_id, "
            "partner_id, developer) values ($1, $2, $3, $4, $5, $6, $7) returning *",
            issuer,
            subject,
            as_role.value,
            values["patient_id"],
            values["clinician_id"],
            values["partner_id"],
            developer,
        )
        after = _account(row)
        await _record(connection, "account-changed", operator, "add", None, after)
    return after


async def list_accounts(
    connection: asyncpg.Connection, role: str | None = None, *, disabled: bool = False
) -> list[dict[str, Any]]:
    rows = await connection.fetch(
        "select * from data.accounts where ($1::text is null or role = $1) "
        "and ($2 or disabled_at is null) order by role, issuer, subject",
        role,
        disabled,
    )
    return [_account(row) for row in rows]


async def change_account(
    connection: asyncpg.Connection,
    *,
    operator: str,
    issuer: str,
    subject: str,
    change: AccountChange,
) -> dict[str, Any]:
    if change.developer is None and not change.enable:
        raise AdminError("nothing to change: give --developer/--no-developer or --enable")
    async with connection.transaction():
        before = _account(await _one_account(connection, issuer, subject))
        row = await connection.fetchrow(
            "update data.accounts set developer = coalesce($3, developer), "
            "disabled_at = case when $4 then null else disabled_at end "
            "where issuer = $1 and subject = $2 returning *",
            issuer,
            subject,
            change.developer,
            change.enable,
        )
        after = _account(row)
        if after == before:
            raise AdminError("nothing changed: the account is already so")
        await _record(connection, "account-changed", operator, "change", before, after)
    return after


async def disable_account(
    connection: asyncpg.Connection, *, operator: str, issuer: str, subject: str
) -> dict[str, Any]:
    async with connection.transaction():
        before = _account(await _one_account(connection, issuer, subject))
        if before["disabled_at"] is not None:
            raise AdminError("the account is already disabled")
        row = await connection.fetchrow(
            "update data.accounts set disabled_at = now() where issuer = $1 and subject = $2 "
            "returning *",
            issuer,
            subject,
        )
        after = _account(row)
        await _record(connection, "account-changed", operator, "disable", before, after)
    return after


# --- partners ------------------------------------------------------------------------------------


def _partner(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "client_id": row["client_id"],
        "allowed_scopes": list(row["allowed_scopes"]),
        "redirect_uris": list(row["redirect_uris"]),
        "disabled_at": row["disabled_at"].isoformat() if row["disabled_at"] else None,
    }


def _checked_scopes(values: Sequence[str]) -> list[str]:
    unknown = sorted(set(values) - set(smart.ALL))
    if unknown:
        raise AdminError(
            f"unknown SMART scope {unknown[0]!r}: one of {', '.join(sorted(smart.ALL))}"
        )
    return sorted(set(values))


def _checked_uris(values: Sequence[str]) -> list[str]:
    """Absolute https URLs (http only to this machine, for a partner's development), without a
    fragment; compared exactly, never by prefix."""
    for value in values:
        parts = urlsplit(value)
        local = parts.scheme == "http" and parts.hostname in {"localhost", "127.0.0.1", "::1"}
        if not (parts.scheme == "https" or local) or not parts.hostname:
            raise AdminError(
                f"redirect URI {value!r}: an absolute https URL (http only for localhost)"
            )
        if parts.fragment or "#" in value:
            raise AdminError(f"redirect URI {value!r}: no fragment")
    return sorted(set(values))


async def _one_partner(connection: asyncpg.Connection, pk: UUID) -> Any:
    row = await connection.fetchrow("select * from data.partners where id = $1 for update", pk)
    if row is None:
        raise AdminError(f"no partner with id {pk}")
    return row


async def _client_id_free(
    connection: asyncpg.Connection, client_id: str | None, pk: UUID | None
) -> None:
    if client_id is None:
        return
    if not client_id.strip():
        raise AdminError("a client id cannot be empty")
    holder = await connection.fetchval(
        "select id from data.partners where client_id = $1 and id is distinct from $2",
        client_id,
        pk,
    )
    if holder is not None:
        raise AdminError(f"client id {client_id!r} belongs to partner {holder}")


async def add_partner(
    connection: asyncpg.Connection,
    *,
    operator: str,
    name: str,
    client_id: str | None = None,
    allowed_scopes: Sequence[str] = (),
    redirect_uris: Sequence[str] = (),
    pk: UUID | None = None,
) -> dict[str, Any]:
    if not name.strip():
        raise AdminError("a partner needs a name patients will recognise")
    checked_scopes = _checked_scopes(allowed_scopes)
    checked_uris = _checked_uris(redirect_uris)
    pk = pk or uuid.uuid4()
    async with connection.transaction():
        if await connection.fetchval(
            "select exists (select 1 from data.partners where id = $1)", pk
        ):
            raise AdminError(f"a partner with id {pk} exists")
        await _client_id_free(connection, client_id, None)
        row = await connection.fetchrow(
            "insert into data.partners (id, name, client_id, allowed_scopes, redirect_uris) "
            "values ($1, $2, $3, $4, $5) returning *",
            pk,
            name.strip(),
            client_id,
            checked_scopes,
            checked_uris,
        )
        after = _partner(row)
        await _record(connection, "partner-changed", operator, "add", None, after)
    return after


async def list_partners(
    connection: asyncpg.Connection, *, disabled: bool = False
) -> list[dict[str, Any]]:
    rows = await connection.fetch(
        "select * from data.partners where $1 or disabled_at is null order by name, id", disabled
    )
    return [_partner(row) for row in rows]


async def change_partner(
    connection: asyncpg.Connection,
    *,
    operator: str,
    pk: UUID,
    name: str | None = None,
    client_id: str | None = None,
    allowed_scopes: Sequence[str] | None = None,
    redirect_uris: Sequence[str] | None = None,
    enable: bool = False,
) -> dict[str, Any]:
    if name is not None and not name.strip():
        raise AdminError("a partner needs a name patients will recognise")
    scopes = None if allowed_scopes is None else _checked_scopes(allowed_scopes)
    uris = None if redirect_uris is None else _checked_uris(redirect_uris)
    async with connection.transaction():
        before = _partner(await _one_partner(connection, pk))
        await _client_id_free(connection, client_id, pk)
        row = await connection.fetchrow(
            "update data.partners set name = coalesce($2, name), "
            "client_id = coalesce($3, client_id), allowed_scopes = coalesce($4, allowed_scopes), "
            "redirect_uris = coalesce($5, redirect_uris), "
            "disabled_at = case when $6 then null else disabled_at end "
            "where id = $1 returning *",
            pk,
            name.strip() if name is not None else None,
            client_id,
            scopes,
            uris,
            enable,
        )
        after = _partner(row)
        if after == before:
            raise AdminError("nothing changed: the partner is already so")
        await _record(connection, "partner-changed", operator, "change", before, after)
    return after


async def disable_partner(
    connection: asyncpg.Connection, *, operator: str, pk: UUID
) -> dict[str, Any]:
    async with connection.transaction():
        before = _partner(await _one_partner(connection, pk))
        if before["disabled_at"] is not None:
            raise AdminError("the partner is already disabled")
        row = await connection.fetchrow(
            "update data.partners set disabled_at = now() where id = $1 returning *", pk
        )
        after = _partner(row)
        await _record(connection, "partner-changed", operator, "disable", before, after)
    return after
