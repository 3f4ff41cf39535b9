"""``gateway accounts`` and ``gateway partners``: sign-ins and partners, changed by an operator.

Who may sign in, as what, and which partners exist, changed without hand-written SQL; every
change is an event of the audit trail (``gateway.data.administration``)."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import click

from gateway.cli.database_url import admin_url_option
from gateway.cli.running import connect, fail, run

__all__ = ["accounts", "partners"]

_ROLES = ["patient", "clinician", "support", "partner", "auditor"]


def _operator_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--operator",
        default=lambda: os.environ.get("GATEWAY_OPERATOR") or getpass.getuser(),
        show_default="$GATEWAY_OPERATOR, else the login name",
        help="Who makes the change, as the audit trail records it.",
    )(function)


def _apply(database_url: str, change: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``change`` on a connection to a database migrated exactly as this gateway expects."""
    from gateway.data.administration import AdminError, check_migrated

    async def go() -> Any:
        connection = await connect(database_url)
        try:
            await check_migrated(connection)
            return await change(connection)
        finally:
            await connection.close()

    try:
        return run(go())
    except AdminError as exc:
        fail(exc.message)


def _show(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _with_graphql_id(partner: dict[str, Any]) -> dict[str, Any]:
    """A partner as printed: with the ID its consent links name (``partner=``, docs/PARTNERS.md)
    and the API shows."""
    from gateway.ids import encode_global_id

    return {**partner, "graphql_id": encode_global_id("Partner", UUID(partner["id"]))}


# --- accounts ------------------------------------------------------------------------------------


@click.group()
def accounts() -> None:
    """Accounts: a verified (issuer, subject) -> role and the party it acts for."""


@accounts.command("add")
@admin_url_option
@click.option("--issuer", required=True, help="The identity provider's issuer (token `iss`).")
@click.option("--subject", required=True, help="The token's `sub` for this person or client.")
@click.option("--role", type=click.Choice(_ROLES), required=True)
@click.option("--patient", "patient", type=click.UUID, help="The patient a patient account is.")
@click.option("--clinician", type=click.UUID, help="The clinician a clinician account is.")
@click.option("--partner", type=click.UUID, help="The partner a partner account acts for.")
@click.option("--developer", is_flag=True, help="May send free-form documents in production.")
@_operator_option
def accounts_add(
    database_url: str,
    issuer: str,
    subject: str,
    role: str,
    patient: UUID | None,
    clinician: UUID | None,
    partner: UUID | None,
    developer: bool,
    operator: str,
) -> None:
    """Add an account (audited)."""
    from gateway.data.administration import add_account

    given = [p for p in (patient, clinician, partner) if p is not None]
    if len(given) > 1:
        fail("give at most one of --patient, --clinician, --partner")
    _show(
        _apply(
            database_url,
            lambda c: add_account(
                c,
                operator=operator,
                issuer=issuer,
                subject=subject,
                role=role,
                party=given[0] if given else None,
                developer=developer,
            ),
        )
    )


@accounts.command("list")
@admin_url_option
@click.option("--role", type=click.Choice(_ROLES), help="Only accounts of this role.")
@click.option("--disabled", is_flag=True, help="Disabled accounts too.")
def accounts_list(database_url: str, role: str | None, disabled: bool) -> None:
    """List accounts as JSON."""
    from gateway.data.administration import list_accounts

    _show(_apply(database_url, lambda c: list_accounts(c, role, disabled=disabled)))


@accounts.command("change")
@admin_url_option
@click.option("--issuer", required=True)
@click.option("--subject", required=True)
@click.option("--developer/--no-developer", default=None, help="Free-form documents or not.")
@click.option("--enable", is_flag=True, help="Enable a disabled account again.")
@_operator_option
def accounts_change(
    database_url: str,
    issuer: str,
    subject: str,
    developer: bool | None,
    enable: bool,
    operator: str,
) -> None:
    """Change an account (audited). Its role and party never change: disable it, add another."""
    from gateway.data.administration import AccountChange, change_account

    change = AccountChange(developer=developer, enable=enable)
    _show(
        _apply(
            database_url,
            lambda c: change_account(
                c, operator=operator, issuer=issuer, subject=subject, change=change
            ),
        )
    )


@accounts.command("disable")
@admin_url_option
@click.option("--issuer", required=True)
@click.option("--subject", required=True)
@_operator_option
def accounts_disable(database_url: str, issuer: str, subject: str, operator: str) -> None:
    """Disable an account (audited): its tokens are refused from the next request on."""
    from gateway.data.administration import disable_account

    _show(
        _apply(
            database_url,
            lambda c: disable_account(c, operator=operator, issuer=issuer, subject=subject),
        )
    )


# --- partners ------------------------------------------------------------------------------------


@click.group()
def partners() -> None:
    """Partners: pharmacies, insurers and care providers patients may consent to."""


@partners.command("add")
@admin_url_option
@click.option("--name", required=True, help="The name patients see on the consent screen.")
@click.option("--id", "pk", type=click.UUID, help="Its id (default: a new one).")
@click.option("--client-id", help="Its OAuth client id at the identity provider.")
@click.option("--scope", "scopes", multiple=True, help="A SMART scope it may ask for (repeat).")
@click.option("--redirect-uri", "uris", multiple=True, help="Where consent returns (repeat).")
@_operator_option
def partners_add(
    database_url: str,
    name: str,
    pk: UUID | None,
    client_id: str | None,
    scopes: tuple[str, ...],
    uris: tuple[str, ...],
    operator: str,
) -> None:
    """Add a partner (audited); then `gateway accounts add --role partner` for its client."""
    from gateway.data.administration import add_partner

    _show(
        _with_graphql_id(
            _apply(
                database_url,
                lambda c: add_partner(
                    c,
                    operator=operator,
                    name=name,
                    client_id=client_id,
                    allowed_scopes=scopes,
                    redirect_uris=uris,
                    pk=pk,
                ),
            )
        )
    )


@partners.command("list")
@admin_url_option
@click.option("--disabled", is_flag=True, help="Disabled partners too.")
def partners_list(database_url: str, disabled: bool) -> None:
    """List partners as JSON."""
    from gateway.data.administration import list_partners

    partners = _apply(database_url, lambda c: list_partners(c, disabled=disabled))
    _show([_with_graphql_id(partner) for partner in partners])


@partners.command("change")
@admin_url_option
@click.option("--id", "pk", type=click.UUID, required=True)
@click.option("--name")
@click.option("--client-id")
@click.option("--scope", "scopes", multiple=True, help="Replaces the scopes it may ask for.")
@click.option("--redirect-uri", "uris", multiple=True, help="Replaces its redirect URIs.")
@click.option("--enable", is_flag=True, help="Enable a disabled partner again.")
@_operator_option
def partners_change(
    database_url: str,
    pk: UUID,
    name: str | None,
    client_id: str | None,
    scopes: tuple[str, ...],
    uris: tuple[str, ...],
    enable: bool,
    operator: str,
) -> None:
    """Change a partner (audited)."""
    from gateway.data.administration import change_partner

    _show(
        _apply(
            database_url,
            lambda c: change_partner(
                c,
                operator=operator,
                pk=pk,
                name=name,
                client_id=client_id,
                allowed_scopes=list(scopes) if scopes else None,
                redirect_uris=list(uris) if uris else None,
                enable=enable,
            ),
        )
    )


@partners.command("disable")
@admin_url_option
@click.option("--id", "pk", type=click.UUID, required=True)
@_operator_option
def partners_disable(database_url: str, pk: UUID, operator: str) -> None:
    """Disable a partner (audited): its accounts are refused from the next request on, and
    patients are no longer offered it."""
    from gateway.data.administration import disable_partner

    _show(_apply(database_url, lambda c: disable_partner(c, operator=operator, pk=pk)))
