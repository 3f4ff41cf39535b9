"""The ``gateway`` command: dev, serve, migrate, seed, token, schema, policy.

Every failure a user can cause (bad arguments, unreachable database, missing settings) ends in one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import click

from gateway.config import DEV_ISSUER, DEV_KEY_PREFIX, Mode, Settings, load_settings
from gateway.errors import ConfigurationError

__all__ = ["main"]


def _fail(message: str) -> None:
    click.echo(f"gateway: {message}", err=True)
    sys.exit(2)


def _run(coroutine: Any) -> Any:
    try:
        return asyncio.run(coroutine)
    except ConfigurationError as exc:
        _fail(exc.message)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _fail(f"database: {exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The consultation gateway."""


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted")
    except click.ClickException as exc:
        _fail(exc.format_message())
    except ConfigurationError as exc:
        _fail(exc.message)


# --- database administration -------------------------------------------------------------------

def _admin_url_from_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        ctx.meta["admin_url_file"] = Path(value).read_text().strip()
    except OSError as exc:
        raise click.BadParameter(f"cannot read ({exc.strerror})") from None


def _resolve_admin_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    from_file = ctx.meta.get("admin_url_file")
    if value is not None and from_file is not None:
        raise click.UsageError("give --database-url or --database-url-file, not both")
    url = value if value is not None else from_file
    if not url:
        raise click.UsageError(
            "Missing option '--database-url' (env GATEWAY_ADMIN_DATABASE_URL) or "
            "'--database-url-file' (env GATEWAY_ADMIN_DATABASE_URL_FILE)"
        )
    return url


def _ADMIN_URL(command: Any) -> Any:
    """The admin URL, from ``--database-url`` or from a file (a mounted Secret)."""
    command = click.option(
        "--database-url",
        envvar="GATEWAY_ADMIN_DATABASE_URL",
        callback=_resolve_admin_url,
        help="URL of a role that owns the schema (env GATEWAY_ADMIN_DATABASE_URL).",
    )(command)
    return click.option(
        "--database-url-file",
        envvar="GATEWAY_ADMIN_DATABASE_URL_FILE",
        is_eager=True,
        expose_value=False,
        callback=_admin_url_from_file,
        type=click.Path(dir_okay=False),
        help="A file holding that URL (env GATEWAY_ADMIN_DATABASE_URL_FILE).",
    )(command)


@cli.command()
@_ADMIN_URL
def migrate(database_url: str) -> None:
    """Apply pending migrations (idempotent)."""
    from gateway.migrate import apply_migrations

    async def go() -> list[str]:
        connection = await _connect(database_url)
        try:
            return await apply_migrations(connection)
        finally:
            await connection.close()

    applied = _run(go())
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise ConfigurationError(f"cannot connect to the database ({exc})") from None


@cli.command()
@_ADMIN_URL
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
    from gateway.seed import SeedPlan, seed_database

    async def go() -> list[dict[str, str]]:
        connection = await _connect(database_url)
        try:
            plan = SeedPlan(patients, clinicians, consultations, seed_value)
            return await seed_database(connection, plan, issuer)
        finally:
            await connection.close()

    principals = _run(go())
    if as_json:
        click.echo(json.dumps(principals, indent=2))
    else:
        click.echo(f"seeded {patients} patients, {clinicians} clinicians")


# --- audit trail -------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit trail: verify its hash chain, export it."""


@audit.command("verify")
@_ADMIN_URL
def audit_verify(database_url: str) -> None:
    """Check the hash chain; name the first broken link (exit 1)."""
    from gateway.audit_chain import verify_chain

    async def go():
        connection = await _connect(database_url)
        try:
            return await verify_chain(connection)
        finally:
            await connection.close()

    report = _run(go())
    if not report.intact:
        click.echo(f"gateway: audit chain {report.message}", err=True)
        sys.exit(1)
    click.echo(report.message)


@audit.command("export")
@_ADMIN_URL
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    required=True,
    help="Earliest event time (UTC unless an offset is given).",
)
@click.option(
    "--format", "output_format", type=click.Choice(["fhir"]), default="fhir", show_default=True
)
@click.option("--output", type=click.File("w"), default="-", help="File (default stdout).")
def audit_export(database_url: str, since: Any, output_format: str, output: Any) -> None:
    """Write events as FHIR R4 AuditEvent JSON, one per line."""
    from datetime import UTC

    import orjson

    from gateway.fhir import to_audit_event

    start = since if since.tzinfo else since.replace(tzinfo=UTC)

    async def go() -> int:
        connection = await _connect(database_url)
        count = 0
        try:
            async with connection.transaction(readonly=True):
                query = (
                    "select * from data.access_events where occurred_at >= $1 "
                    "and seq is not null order by seq"
                )
                async for row in connection.cursor(query, start, prefetch=1000):
                    output.write(orjson.dumps(to_audit_event(row)).decode() + "\n")
                    count += 1
        finally:
            await connection.close()
        return count

    count = _run(go())
    click.echo(f"exported {count} events", err=True)


# --- development -------------------------------------------------------------------------------

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dev-data"),
    show_default=True,
    help="Folder holding the development database, signing key and media.",
)


@cli.command()
@_DATA_DIR
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--log-format",
    envvar="GATEWAY_LOG_FORMAT",
    type=click.Choice(["json", "console"]),
    default="console",
    show_default=True,
    help="env GATEWAY_LOG_FORMAT",
)
@click.option(
    "--log-level",
    envvar="GATEWAY_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error", "critical"]),
    default="info",
    show_default=True,
    help="env GATEWAY_LOG_LEVEL",
)
def dev(data_dir: Path, host: str, port: int, log_format: str, log_level: str) -> None:
    """Run a development gateway: embedded PostgreSQL, demo data, GraphiQL, demo tokens."""
    import uvicorn

    from gateway.app import create_app
    from gateway.devkeys import DevIdentity
    from gateway.pgembed import EmbeddedPostgres

    data_dir = data_dir.resolve()
    identity = DevIdentity.load_or_create(data_dir)
    cluster = EmbeddedPostgres(data_dir)
    try:
        server_url = cluster.start()
        app_url, principals = _run(_prepare_dev_database(server_url, data_dir, identity.issuer))
        (data_dir / "principals.json").write_text(json.dumps(principals, indent=2))
        base_url = f"http://{host}:{port}"
        settings = load_settings(
            {},
            mode=Mode.DEVELOPMENT,
            database_url=app_url,
            jwt_issuer=identity.issuer,
            jwt_audience=identity.audience,
            jwks_file=identity.jwks_file,
            media_signing_keys=identity.media_keys(),
            media_root=data_dir / "media",
            public_base_url=base_url,
            log_format=log_format,
            log_level=log_level,
        )
        _print_banner(base_url, data_dir, identity, principals)
        uvicorn.run(create_app(settings), host=host, port=port, **_uvicorn_logging(settings))
    finally:
        cluster.stop()


async def _prepare_dev_database(
    server_url: str, data_dir: Path, issuer: str
) -> tuple[str, list[dict[str, str]]]:
    from gateway.ids import encode_global_id
    from gateway.pgembed import provision, with_credentials
    from gateway.seed import SeedPlan, seed_database, write_demo_media

    connection = await _connect(server_url)
    try:
        if not await connection.fetchval("select 1 from pg_database where datname = 'gateway'"):
            await connection.execute("create database gateway")
    finally:
        await connection.close()
    admin_url = with_credentials(server_url, "postgres", "", database="gateway")
    password_file = data_dir / "app-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(24))
        password_file.chmod(0o600)
    app_url = await provision(admin_url, password_file.read_text().strip())
    connection = await _connect(admin_url)
    try:
        if not await connection.fetchval("select exists (select 1 from data.patients)"):
            await seed_database(connection, SeedPlan(), issuer)
            await write_demo_media(connection, data_dir / "media")
        rows = await connection.fetch(
            "select subject, role, patient_id, clinician_id, partner_id from data.accounts "
            "order by role, subject"
        )
    finally:
        await connection.close()
    kinds = {"patient_id": "Patient", "clinician_id": "Clinician", "partner_id": "Partner"}
    principals = []
    for row in rows:
        column = next((c for c in kinds if row[c] is not None), None)
        principals.append(
            {
                "subject": row["subject"],
                "role": row["role"],
                "id": encode_global_id(kinds[column], row[column]) if column else None,
            }
        )
    return app_url, principals


def _print_banner(
    base_url: str, data_dir: Path, identity: Any, principals: list[dict[str, str]]
) -> None:
    patient = next(p for p in principals if p["role"] == "patient")
    clinician = next(p for p in principals if p["role"] == "clinician")
    patient_token = identity.token(patient["subject"], ttl=8 * 3600)
    clinician_token = identity.token(clinician["subject"], ttl=8 * 3600)
    from gateway.graphiql import graphiql_link

    click.echo(
        f"""
Consultation gateway (development mode)
  GraphiQL:    {graphiql_link(base_url, patient_token)}
  principals:  {data_dir / "principals.json"}
  more tokens: gateway token --data-dir {data_dir} --subject SUBJECT

  patient   {patient["subject"]}:
    {patient_token}
  clinician {clinician["subject"]}:
    {clinician_token}

  curl -s {base_url}/graphql -H 'content-type: application/json' \\
    -H 'authorization: Bearer {patient_token[:16]}...' \\
    -d '{{"query": "{{ consultations(first: 5) {{ edges {{ node {{ id reason }} }} }} }}"}}'
"""
    )


@cli.command()
@_DATA_DIR
@click.option("--subject", required=True, help="Subject of an account in principals.json.")
@click.option(
    "--ttl",
    type=click.IntRange(1, 7 * 24 * 3600),
    default=3600,
    show_default=True,
    help="Lifetime in seconds.",
)
@click.option(
    "--scope",
    default=None,
    help="Space-separated scopes (partners), e.g. 'patient/Consultation.rs'.",
)
@click.option(
    "--mode",
    envvar="GATEWAY_MODE",
    type=click.Choice([m.value for m in Mode]),
    default=Mode.DEVELOPMENT.value,
    hidden=True,
)
def token(data_dir: Path, subject: str, ttl: int, scope: str | None, mode: str) -> None:
    """Print a development token for one of a development instance's accounts."""
    from gateway.devkeys import DevIdentity

    if mode == Mode.PRODUCTION.value:
        _fail("token: refused in production (GATEWAY_MODE=production); tokens come from your IdP")
    identity = DevIdentity.load(data_dir.resolve())
    principals_file = data_dir / "principals.json"
    if not principals_file.exists():
        _fail(f"--data-dir: {principals_file} not found (start `gateway dev` once)")
    subjects = {p["subject"] for p in json.loads(principals_file.read_text())}
    if subject not in subjects:
        _fail(f"--subject: no account {subject!r} in {principals_file}")
    claims = {"scope": scope, "azp": subject} if scope else {}
    click.echo(identity.token(subject, ttl=ttl, **claims))


# --- production --------------------------------------------------------------------------------


def refuse_development_identity(settings: Settings) -> None:
    """``serve`` must never trust the development identity provider."""
    if settings.jwt_issuer == DEV_ISSUER:
        raise ConfigurationError("GATEWAY_JWT_ISSUER: the development issuer is refused by serve")
    if settings.jwks_file is not None:
        try:
            keys = json.loads(settings.jwks_file.read_text()).get("keys", [])
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"GATEWAY_JWKS_FILE: cannot read ({exc})") from None
        if any(str(key.get("kid", "")).startswith(DEV_KEY_PREFIX) for key in keys):
            raise ConfigurationError("GATEWAY_JWKS_FILE: holds a development key; refused by serve")


@cli.command()
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
def serve(host: str, port: int, workers: int) -> None:
    """Serve in production mode (settings from the environment; see README)."""
    import uvicorn

    settings = load_settings()
    if settings.mode is not Mode.PRODUCTION:
        click.echo("gateway: warning: GATEWAY_MODE is not production", err=True)
    refuse_development_identity(settings)
    if settings.metrics_port is not None and workers > 1:
        _fail("GATEWAY_METRICS_PORT: serves one worker's metrics; use --workers 1 (scale pods)")

    async def check() -> None:
        from gateway.db import Database

        database = await Database.connect(settings)
        await database.close()

    _run(check())
    # uvicorn re-raises SIGTERM/SIGINT once its graceful shutdown is over, so that their default
    # action ends the process (status 143); a stop that was asked for and completed is a success.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    uvicorn.run(
        "gateway.app:create_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        **_uvicorn_logging(settings),
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def _uvicorn_logging(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging arguments: the gateway's one setup, no access log (the gateway writes
    its own line per request)."""
    from gateway.logs import logging_config

    return {
        "log_config": logging_config(settings),
        "log_level": settings.log_level,
        "access_log": False,
    }


@cli.command()
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    required=True,
    help="The application role's URL (env DATABASE_URL).",
)
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
    from gateway.explain import explain_query, render_explanation

    try:
        parsed = json.loads(variables)
    except ValueError:
        _fail("--variables: not valid JSON")
    if not isinstance(parsed, dict):
        _fail("--variables: must be a JSON object")
    entries, objects, errors = _run(
        explain_query(
            database_url, issuer, subject, frozenset(scope.split()), query_file.read(), parsed
        )
    )
    click.echo(render_explanation(entries, objects))
    for error in errors:
        click.echo(f"error: {error}", err=True)


@cli.group()
def manifest() -> None:
    """Trusted documents: the manifest of operations first-party apps may send by hash."""


@manifest.command("build")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--output", type=click.File("w"), default="-", help="File (default stdout).")
def manifest_build(paths: tuple[Path, ...], output: Any) -> None:
    """Build a persisted query manifest from .graphql files (or folders of them)."""
    from gateway.documents import build_manifest
    from resolvers import build_schema

    files: list[Path] = []
    for path in paths:
        files += sorted(path.rglob("*.graphql")) if path.is_dir() else [path]
    if not files:
        _fail("manifest: no .graphql files found")
    try:
        built = build_manifest(files, build_schema()._schema)
    except ConfigurationError as exc:
        _fail(exc.message)
    except Exception as exc:  # a syntax error in an app's document
        _fail(f"manifest: {exc}".splitlines()[0])
    output.write(json.dumps(built, indent=2) + "\n")
    click.echo(f"{len(built['operations'])} operations", err=True)


# --- introspection of the code -----------------------------------------------------------------


@cli.command()
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
def schema(output: Path | None) -> None:
    """Print the GraphQL schema (SDL)."""
    from resolvers import build_schema

    text = build_schema().as_str() + "\n"
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "markdown"]),
    default="table",
    show_default=True,
)
def policy(output_format: str) -> None:
    """Print the policy table as a role x field matrix, with conditions."""
    from gateway.policy_doc import policy_markdown, policy_matrix

    click.echo(policy_matrix() if output_format == "table" else policy_markdown(), nl=False)
    if output_format == "table":
        click.echo()


@cli.command("settings")
def settings_command() -> None:
    """Print every setting (variable, default, meaning) as a Markdown table."""
    from gateway.settings_doc import settings_markdown

    click.echo(settings_markdown(), nl=False)


if __name__ == "__main__":
    main()
