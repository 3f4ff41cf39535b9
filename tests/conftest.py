"""Starts a real PostgreSQL (or uses TEST_DATABASE_URL, a superuser URL), migrates and seeds a
fresh database, and serves the gateway over real HTTP on a loopback port."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest

from gateway import create_app, load_settings
from gateway.config import Mode, Settings
from gateway.dev.embedded import EmbeddedPostgres, provision, with_credentials
from gateway.dev.identity import DevIdentity
from gateway.dev.seed import SeedPlan, seed_database, write_demo_media
from gateway.ids import decode_global_id, encode_global_id
from tests.support.executors import EXECUTORS, ExecutorClient, serve_executor, write_manifest
from tests.support.server import GraphQLClient, ServerThread

PLAN = SeedPlan(patients=12, clinicians=3, consultations_per_patient=5, seed=7)


@dataclass
class Truth:
    """What the database holds, read as superuser: the oracle for leak tests."""

    consultations_of_patient: dict[UUID, set[UUID]] = field(default_factory=dict)
    recordings_of_patient: dict[UUID, set[UUID]] = field(default_factory=dict)
    consultations_of_clinician: dict[UUID, set[UUID]] = field(default_factory=dict)
    patients_of_clinician: dict[UUID, set[UUID]] = field(default_factory=dict)
    recordings_of_consultation: dict[UUID, list[UUID]] = field(default_factory=dict)
    owner_of: dict[UUID, UUID] = field(default_factory=dict)

    def global_ids_not_of(self, patient: UUID) -> set[str]:
        """Every global ID of a consultation, recording or patient not owned by ``patient``."""
        found = set()
        for owner, items in self.consultations_of_patient.items():
            if owner != patient:
                found |= {encode_global_id("Consultation", pk) for pk in items}
                found.add(encode_global_id("Patient", owner))
        for owner, items in self.recordings_of_patient.items():
            if owner != patient:
                found |= {encode_global_id("Recording", pk) for pk in items}
        return found


@dataclass
class Environment:
    admin_url: str
    app_url: str
    identity: DevIdentity
    media_root: Path
    principals: list[dict[str, str]]
    truth: Truth

    def patients(self) -> list[tuple[str, UUID]]:
        return [
            (p["subject"], decode_global_id(p["id"])[1])
            for p in self.principals
            if p["role"] == "patient"
        ]

    def clinicians(self) -> list[tuple[str, UUID]]:
        return [
            (p["subject"], decode_global_id(p["id"])[1])
            for p in self.principals
            if p["role"] == "clinician"
        ]

    def token(self, subject: str, **claims) -> str:
        return self.identity.token(subject, **claims)

    def settings(self, **overrides) -> Settings:
        values = {
            "mode": Mode.PRODUCTION,
            "database_url": self.app_url,
            "jwt_issuer": self.identity.issuer,
            "jwt_audience": self.identity.audience,
            "jwks_file": self.identity.jwks_file,
            "media_signing_keys": self.identity.media_keys(),
            "jwks_min_refresh_seconds": 0,
            # Client and server share this process's two cores in tests: be patient.
            "db_acquire_timeout_seconds": 15,
            # The suite reuses a few accounts thousands of times; limits get their own tests.
            "rate_limit_requests_per_minute": 1_000_000,
            "rate_limit_field_calls_per_minute": 1_000_000,
            "free_form_documents": "everyone",
            "media_root": self.media_root,
        }
        values.update(overrides)
        return load_settings({}, **values)


async def _read_truth(url: str) -> Truth:
    truth = Truth()
    connection = await asyncpg.connect(url)
    try:
        for row in await connection.fetch(
            "select id, patient_id, clinician_id from data.consultations"
        ):
            truth.consultations_of_patient.setdefault(row["patient_id"], set()).add(row["id"])
            truth.consultations_of_clinician.setdefault(row["clinician_id"], set()).add(row["id"])
            truth.patients_of_clinician.setdefault(row["clinician_id"], set()).add(
                row["patient_id"]
            )
            truth.owner_of[row["id"]] = row["patient_id"]
            truth.recordings_of_consultation.setdefault(row["id"], [])
        for row in await connection.fetch(
            "select id, patient_id, consultation_id from data.recordings order by segment_index"
        ):
            truth.recordings_of_patient.setdefault(row["patient_id"], set()).add(row["id"])
            truth.recordings_of_consultation[row["consultation_id"]].append(row["id"])
            truth.owner_of[row["id"]] = row["patient_id"]
        for row in await connection.fetch("select id from data.patients"):
            truth.owner_of[row["id"]] = row["id"]
            truth.consultations_of_patient.setdefault(row["id"], set())
            truth.recordings_of_patient.setdefault(row["id"], set())
    finally:
        await connection.close()
    return truth


async def _prepare(server_url: str, identity: DevIdentity, media_root: Path) -> Environment:
    database = f"gateway_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'create database "{database}"')
    finally:
        await admin.close()
    admin_url = with_credentials(server_url, *_user_password(server_url), database=database)
    app_url = await provision(admin_url, secrets.token_urlsafe(16))
    connection = await asyncpg.connect(admin_url)
    try:
        principals = await seed_database(connection, PLAN, identity.issuer)
        await write_demo_media(connection, media_root)
    finally:
        await connection.close()
    return Environment(
        admin_url, app_url, identity, media_root, principals, await _read_truth(admin_url)
    )


def _user_password(url: str) -> tuple[str, str]:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    return unquote(parts.username or "postgres"), unquote(parts.password or "")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    # Outside pytest's 0700 temp root, so the postgres system user can reach it when we are root.
    directory = Path(tempfile.mkdtemp(prefix="gateway-test-pg-"))
    cluster = EmbeddedPostgres(directory, fast=True)
    url = cluster.start()
    try:
        yield url
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def env(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    identity = DevIdentity.load_or_create(Path(tmp_path_factory.mktemp("identity")))
    media_root = Path(tmp_path_factory.mktemp("media"))
    made = asyncio.run(_prepare(postgres_url, identity, media_root))
    yield made
    # On a shared cluster (TEST_DATABASE_URL: mutation testing runs a session per mutant), the
    # session's database goes with it.
    asyncio.run(_drop(postgres_url, made.admin_url))


async def _drop(server_url: str, database_url: str) -> None:
    from urllib.parse import urlsplit

    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def server(env: Environment) -> Iterator[ServerThread]:
    thread = ServerThread(create_app(env.settings())).start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="session")
def client(server: ServerThread) -> GraphQLClient:
    return GraphQLClient(server.url)


@pytest.fixture(scope="session")
def viewer(env: Environment) -> dict:
    """The first seeded patient and two of their recordings (their media files exist): what the
    playback tests play, with the patient's token and the first recording's global ID."""
    subject, patient = env.patients()[0]
    recordings = sorted(env.truth.recordings_of_patient[patient])
    return {
        "subject": subject,
        "patient": patient,
        "recording": recordings[0],
        "other_recording": recordings[1],
        "token": env.token(subject),
        "global_id": encode_global_id("Recording", recordings[0]),
    }


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test manifest (``tests.support.executors``): every document a test declared, and the web
    app's operations."""
    return write_manifest(Path(tmp_path_factory.mktemp("manifest")))


@pytest.fixture(scope="module", params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> str:
    """Each test that asks for it runs once per executor: ``interpreted`` and ``compiled``."""
    return request.param


@pytest.fixture(scope="module")
def gateway(env: Environment, executor: str, manifest: Path) -> Iterator[ExecutorClient]:
    """A gateway of the module's executor, over the real database."""
    with serve_executor(env, executor, manifest) as made:
        yield made
