"""``gateway migrate`` and ``gateway seed``."""

from __future__ import annotations

import json

import click

from gateway.cli.database_url import admin_url_option
from gateway.cli.running import connect, run
from gateway.config import DEV_ISSUER

__all__ = ["migrate", "seed"]


@click.command()
@admin_url_option
@click.option(
    "--hand-over-to",
    "owner",
    metavar="ROLE",
    help="Once, as a superuser, for a database a superuser migrated: make ROLE own every object "
    "the migrations made, then migrate as ROLE (a superuser always migrates as the schema's "
    "owner).",
)
def migrate(database_url: str, owner: str | None) -> None:
    """Apply pending migrations (idempotent), as the schema's owner: neither SUPERUSER nor
    BYPASSRLS (nor CREATEROLE, in production)."""
    from gateway.data.migrate import apply_migrations, hand_over

    async def go() -> list[str]:
        connection = await connect(database_url)
        try:
            if owner is not None:
                moved = await hand_over(connection, owner)
                click.echo(f"{moved} objects handed over to {owner}")
            return await apply_migrations(connection)
        finally:
            await connection.close()

    applied = run(go())
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@click.command()
@admin_url_option
@click.option("--patients", type=click.IntRange(1), default=8, show_default=True)
@click.option("--clinicians", type=click.IntRange(1), default=3, show_default=True)
@click.option(
    "--consultations",
    type=click.IntRange(0),
    default=4,
    show_default=True,
    help="Consultations per patient.",
)
@click.option("--seed", "seed_value", type=int, default=1, show_default=True)
@click.option(
    "--issuer", default=DEV_ISSUER, show_default=True, help="Issuer of the accounts' tokens."
)
@click.option("--json", "as_json", is_flag=True, help="Print the principals made, as JSON.")
def seed(
    database_url: str,
    patients: int,
    clinicians: int,
    consultations: int,
    seed_value: int,
    issuer: str,
    as_json: bool,
) -> None:
    """Load deterministic synthetic data into an empty, migrated database."""
    from gateway.dev.seed import SeedPlan, seed_database

    async def go() -> list[dict[str, str | None]]:
        connection = await connect(database_url)
        try:
            plan = SeedPlan(patients, clinicians, consultations, seed_value)
            return await seed_database(connection, plan, issuer)
        finally:
            await connection.close()

    principals = run(go())
    if as_json:
        click.echo(json.dumps(principals, indent=2))
    else:
        click.echo(f"seeded {patients} patients, {clinicians} clinicians")
