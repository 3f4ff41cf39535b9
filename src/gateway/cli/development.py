"""``gateway dev``, a development instance in one folder, and ``gateway token``, a token for it.

A development instance is embedded PostgreSQL, demo data, GraphiQL and demo tokens, everything
in one folder; ``gateway token`` makes a token for one of its accounts."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.running import connect, fail, run
from gateway.cli.serve import uvicorn_logging
from gateway.config import Mode, Settings, load_settings
from gateway.errors import ConfigurationError

if TYPE_CHECKING:
    from gateway.dev.instance import InstanceUrls

__all__ = ["data_dir_option", "dev", "token"]

# Demo patients offered on the development sign-in page.
DEMO_SIGN_INS = 12


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dev-data"),
    show_default=True,
    help="Folder holding the development database, signing key and media.",
)


@click.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
# Checked with the other settings by load_settings, not by click (which stops at the first bad
# option), so that both are reported when both are bad.
@click.option(
    "--log-format",
    envvar="GATEWAY_LOG_FORMAT",
    metavar="[json|console]",
    default="console",
    show_default=True,
    help="env GATEWAY_LOG_FORMAT",
)
@click.option(
    "--log-level",
    envvar="GATEWAY_LOG_LEVEL",
    metavar="[debug|info|warning|error|critical]",
    default="info",
    show_default=True,
    help="env GATEWAY_LOG_LEVEL",
)
def dev(data_dir: Path, host: str, port: int, log_format: str, log_level: str) -> None:
    """Run a development gateway: embedded PostgreSQL, demo data, GraphiQL, demo tokens.

    Writes DATA_DIR/instance.json (owner-only) with the URLs it serves and uses; stops its
    PostgreSQL on Ctrl-C, SIGTERM and SIGHUP alike."""
    from gateway.dev.embedded import EmbeddedPostgres
    from gateway.dev.identity import DevIdentity
    from gateway.dev.instance import claim
    from gateway.web.webapp import webapp_files

    data_dir = data_dir.resolve()
    held = claim(data_dir, "gateway dev")
    stopper = _Stopper()
    cluster = EmbeddedPostgres(data_dir)
    listener: socket.socket | None = None
    try:
        stopper.install()
        listener = _listen(host, port)
        bound = listener.getsockname()[1]
        base_url = f"http://{host}:{bound}" if ":" not in host else f"http://[{host}]:{bound}"
        identity = DevIdentity.load_or_create(data_dir)
        _, manifest = webapp_files()
        # Checked before PostgreSQL starts; the database URL is known once it has.
        settings = load_settings(
            {},
            mode=Mode.DEVELOPMENT,
            database_url="",
            jwt_issuer=identity.issuer,
            jwt_audience=identity.audience,
            jwks_file=identity.jwks_file,
            media_signing_keys=identity.media_keys(),
            media_root=data_dir / "media",
            public_base_url=base_url,
            # The web app's operations by hash (free-form documents are accepted too).
            trusted_documents=manifest if manifest.is_file() else None,
            log_format=log_format,
            log_level=log_level,
        )
        with stopper.deferred():  # initdb and pg_ctl finish, so that the folder stays whole
            server_url = cluster.start()
        urls = held.urls(server_url)
        # Migrations and demo data (seconds) finish too: a stop raised inside the event loop
        # lands in whichever task is running, and asyncio keeps a BaseException other than
        # KeyboardInterrupt and SystemExit as that task's result: raised in one of asyncpg's
        # tasks, the signal was lost and the gateway went on to serve (seen once in CI).
        with stopper.deferred():
            principals, people = run(_prepare_dev_database(urls, data_dir, identity.issuer))
        (data_dir / "principals.json").write_text(json.dumps(principals, indent=2))
        settings = settings.model_copy(update={"database_url": urls.app})
        held.publish(base_url, urls)
        provider = _identity_provider(base_url, identity, people)
        _print_banner(base_url, data_dir, identity, principals)
        _serve(settings, listener, host, stopper, provider)
    except _Stop as stop:
        click.echo(f"gateway dev: stopped ({stop.args[0]})", err=True)
    finally:
        stopper.ignore()  # a second signal must not cut the clean-up short
        cluster.stop()
        held.release()
        if listener is not None:
            listener.close()


def _identity_provider(base_url: str, identity: Any, people: list[tuple[str, str]]) -> Any:
    """The development OpenID Connect provider at /dev/oidc, where the web app at /app/ signs in
    by choosing a demo patient."""
    from gateway.dev.oidc import PATH, DevOidcProvider, Person
    from gateway.web.webapp import CLIENT_ID
    from gateway.web.webapp import PATH as APP

    return DevOidcProvider(
        identity,
        f"{base_url}{PATH}",
        {CLIENT_ID: [f"{base_url}{APP}"]},
        [Person(subject, name) for subject, name in people],
    )


def _serve(
    settings: Settings, listener: socket.socket, host: str, stopper: _Stopper, provider: Any
) -> None:
    import uvicorn

    from gateway.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, identity_provider=provider),
            host=host,
            port=listener.getsockname()[1],
            timeout_graceful_shutdown=5,
            **uvicorn_logging(settings),
        )
    )
    stopper.server = server
    server.run(sockets=[listener])


class _Stop(BaseException):
    """A stop signal: unwinds ``dev`` so that its PostgreSQL is stopped, whatever phase it is in."""


class _Stopper:
    """SIGINT, SIGTERM and SIGHUP all stop ``gateway dev`` the same way. While uvicorn serves, a
    signal starts its graceful shutdown (uvicorn handles SIGINT and SIGTERM itself, and re-raises
    them once it has shut down; SIGHUP is passed to it here); any other time, it raises
    :class:`_Stop`."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.server: Any = None
        self._deferring = False
        self._pending: str | None = None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a stop signal until the block is over, then stop."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending is not None:
            raise _Stop(self._pending)

    def install(self) -> None:
        for number in self.SIGNALS:
            signal.signal(number, self._handle)

    def ignore(self) -> None:
        for number in self.SIGNALS:
            signal.signal(number, signal.SIG_IGN)

    def _handle(self, number: int, frame: Any) -> None:
        if self._deferring:
            self._pending = signal.Signals(number).name
            return
        server = self.server
        if server is not None and not server.should_exit:
            server.handle_exit(number, frame)
            return
        raise _Stop(signal.Signals(number).name)


def _listen(host: str, port: int) -> socket.socket:
    """Bind before anything starts, so that a taken port is one clear line (and ``--port 0``
    picks a free one, written to instance.json)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        message = f"--host {host} --port {port}: cannot listen ({exc.strerror})"
        raise ConfigurationError(message) from None


async def _prepare_dev_database(
    urls: InstanceUrls, data_dir: Path, issuer: str
) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """Creates, migrates and seeds the database once; the accounts (principals.json) and the
    demo patients one signs in as in the web app (subject, name)."""
    from gateway.dev.embedded import provision, with_credentials
    from gateway.dev.instance import DATABASE
    from gateway.dev.seed import SeedPlan, seed_database, write_demo_media
    from gateway.ids import encode_global_id

    connection = await connect(with_credentials(urls.admin, "postgres", "", database="postgres"))
    try:
        if not await connection.fetchval("select 1 from pg_database where datname = $1", DATABASE):
            await connection.execute(f"create database {DATABASE}")
    finally:
        await connection.close()
    await provision(urls.admin, urls.app_password)
    connection = await connect(urls.admin)
    try:
        if not await connection.fetchval("select exists (select 1 from data.patients)"):
            await seed_database(connection, SeedPlan(), issuer)
            await write_demo_media(connection, data_dir / "media")
        rows = await connection.fetch(
            "select subject, role, patient_id, clinician_id, partner_id from data.accounts "
            "order by role, subject"
        )
        people = await connection.fetch(
            "select a.subject, p.display_name from data.accounts a "
            "join data.patients p on p.id = a.patient_id "
            "where a.role = 'patient' order by a.subject limit $1",
            DEMO_SIGN_INS,
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
    return principals, [(row["subject"], row["display_name"]) for row in people]


def _print_banner(
    base_url: str, data_dir: Path, identity: Any, principals: list[dict[str, str]]
) -> None:
    patient = next(p for p in principals if p["role"] == "patient")
    clinician = next(p for p in principals if p["role"] == "clinician")
    patient_token = identity.token(patient["subject"], ttl=8 * 3600)
    clinician_token = identity.token(clinician["subject"], ttl=8 * 3600)
    from gateway.web.graphiql import graphiql_link
    from gateway.web.webapp import PATH

    click.echo(
        f"""
Consultation gateway (development mode)
  GraphiQL:    {graphiql_link(base_url, patient_token)}
  Web app:     {base_url}{PATH} (sign in by choosing a demo patient)
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


@click.command()
@data_dir_option
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
    from gateway.dev.identity import DevIdentity

    if mode == Mode.PRODUCTION.value:
        fail("token: refused in production (GATEWAY_MODE=production); tokens come from your IdP")
    identity = DevIdentity.load(data_dir.resolve())
    principals_file = data_dir / "principals.json"
    if not principals_file.exists():
        fail(f"--data-dir: {principals_file} not found (start `gateway dev` once)")
    subjects = {p["subject"] for p in json.loads(principals_file.read_text())}
    if subject not in subjects:
        fail(f"--subject: no account {subject!r} in {principals_file}")
    claims = {"scope": scope, "azp": subject} if scope else {}
    click.echo(identity.token(subject, ttl=ttl, **claims))
