"""Explaining a response: for each field checked and object loaded, allowed or denied and by
which rule of the policy table. Development mode only (``X-Gateway-Explain: 1``), and the
``gateway explain`` command."""

from __future__ import annotations

import secrets
import time
from typing import Any

from gateway import queries
from gateway.errors import ConfigurationError
from gateway.identity import Principal, Role
from gateway.ledger import Ledger

__all__ = ["explain_query", "explanation", "render_explanation"]


def explanation(ledger: Ledger) -> list[dict[str, Any]]:
    return [
        {"path": path, "type": type_name, "field": field, "decision": decision, "rule": rule}
        for path, type_name, field, decision, rule in ledger.explanations or []
    ]


def render_explanation(entries: list[dict[str, Any]], objects: list[tuple[str, str]]) -> str:
    """A plain-text table for the terminal."""
    rows = [("path", "decision", "rule")]
    rows += [(e["path"], e["decision"], e["rule"]) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if objects:
        lines.append("")
        lines.append("objects loaded (row scope of the caller's role):")
        lines += [f"  {type_name} {object_id}" for type_name, object_id in objects]
    return "\n".join(lines)


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

    from gateway.changes import AccessChanges
    from gateway.config import Mode, load_settings
    from gateway.context import RequestContext
    from gateway.db import Database
    from gateway.loaders import Loaders
    from gateway.media import PlaybackSigner
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
        row = rows[0]
        principal = Principal(
            issuer=issuer,
            subject=subject,
            role=Role(row["role"]),
            actor_id=row["patient_id"] or row["clinician_id"] or row["partner_id"],
            expires_at=time.time() + 60,
            scopes=scopes,
        )
        ledger = Ledger(explanations=[])
        context = RequestContext(
            principal=principal,
            loaders=Loaders(database.fetch, principal, ledger),
            ledger=ledger,
            request_id="explain",
            settings=settings,
            playback=PlaybackSigner(settings.signing_keys(), 60),
            changes=AccessChanges(database.fetch, principal, ledger, "explain", settings),
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
    objects = [(type_name, str(object_id)) for type_name, object_id, _ in ledger.objects]
    errors = [
        error.message
        for error in result.errors or []
        if (error.original_error is None or error.path is None)
    ]
    return explanation(ledger), objects, errors
