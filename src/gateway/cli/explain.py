"""``gateway explain``: which rule allowed or denied each field a query touches."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import click

from gateway.cli.database_url import app_url_option
from gateway.cli.running import fail, run
from gateway.config import DEV_ISSUER
from gateway.errors import ConfigurationError

__all__ = ["explain"]


@click.command()
@app_url_option
@click.option("--subject", required=True, help="The account to explain for.")
@click.option("--issuer", default=DEV_ISSUER, show_default=True)
@click.option("--scope", default="", help="Token scopes (partners), space-separated.")
@click.option(
    "--query",
    "query_file",
    type=click.File("r"),
    required=True,
    help="File holding the GraphQL document ('-' for stdin).",
)
@click.option("--variables", default="{}", help="JSON object of variables.")
def explain(
    database_url: str, subject: str, issuer: str, scope: str, query_file: Any, variables: str
) -> None:
    """Show, for each field and object a query touches, allowed or denied and by which rule.

    Runs the query as the account would, against the database, and prints decisions and object
    IDs, never field values."""
    from gateway.authz.explain import render_explanation

    try:
        parsed = json.loads(variables)
    except ValueError:
        fail("--variables: not valid JSON")
    if not isinstance(parsed, dict):
        fail("--variables: must be a JSON object")
    entries, objects, errors = run(
        explain_query(
            database_url, issuer, subject, frozenset(scope.split()), query_file.read(), parsed
        )
    )
    click.echo(render_explanation(entries, objects))
    for error in errors:
        click.echo(f"error: {error}", err=True)


async def explain_query(
    database_url: str,
    issuer: str,
    subject: str,
    scopes: frozenset[str],
    query: str,
    variables: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[tuple[str, str]], list[str]]:
    """Run ``query`` as (issuer, subject) with an explaining ledger; nothing is sent anywhere."""
    from strawberry.schema.exceptions import InvalidOperationTypeError
    from strawberry.types.graphql import OperationType

    from gateway.authn.accounts import account_principal
    from gateway.authz.explain import explanation
    from gateway.authz.playback import PlaybackSigner
    from gateway.config import Mode, load_settings
    from gateway.data import queries
    from gateway.data.pool import Database
    from gateway.execution.context import RequestContext
    from resolvers import build_schema

    settings = load_settings(
        {},
        mode=Mode.DEVELOPMENT,
        database_url=database_url,
        jwt_issuer=issuer,
        jwt_audience="explain",
        jwks_url="https://unused.invalid/jwks.json",
        media_signing_keys=f"explain:{secrets.token_urlsafe(32)}",
        media_store="s3",
        media_s3_bucket="unused",
        db_pool_max_size=2,
    )
    database = await Database.connect(settings)
    try:
        rows = await database.fetch(queries.ACCOUNT_FOR, issuer, subject)
        if not rows:
            raise ConfigurationError(f"--subject: no account {subject!r} for issuer {issuer!r}")
        principal = account_principal(
            rows[0], issuer=issuer, subject=subject, expires_at=time.time() + 60, scopes=scopes
        )
        context = RequestContext.open(
            principal,
            "explain",
            fetch=database.fetch,
            settings=settings,
            playback=PlaybackSigner(settings.signing_keys(), 60),
            explaining=True,
        )
        try:
            result = await build_schema(settings).execute(
                query,
                variable_values=variables,
                context_value=context,
                allowed_operation_types={OperationType.QUERY},
            )
        except InvalidOperationTypeError:
            raise ConfigurationError("--query: only queries can be explained") from None
    finally:
        await database.close()
    ledger = context.ledger
    objects = [(type_name, str(object_id)) for type_name, object_id, _ in ledger.objects]
    errors = [
        error.message
        for error in result.errors or []
        if (error.original_error is None or error.path is None)
    ]
    return explanation(ledger), objects, errors
