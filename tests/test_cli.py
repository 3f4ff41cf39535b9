"""The ``gateway`` command as a user runs it: real processes, one clear line on every failure."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from gateway.config import DEV_ISSUER
from gateway.dev.embedded import with_credentials
from tests.support.gateway_process import run_gateway
from tests.support.sign_in import oidc_sign_in

ROOT = Path(__file__).resolve().parents[1]


gateway = run_gateway


def assert_one_line_failure(result, text: str):
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert text in result.stderr


def _fresh_database(postgres_url: str) -> str:
    name = f"gateway_cli_{secrets.token_hex(4)}"

    async def create():
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(f'create database "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(postgres_url)
    return with_credentials(
        postgres_url,
        unquote(parts.username or "postgres"),
        unquote(parts.password or ""),
        database=name,
    )


def test_policy_prints_the_role_by_field_matrix():
    result = gateway("policy")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "type.field",
        "patient",
        "clinician",
        "support",
        "partner",
        "auditor",
    ]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["Consultation.clinicianNotes"].split("  ")[0] == "Consultation.clinicianNotes"
    assert [c.strip() for c in rows["Consultation.clinicianNotes"].split("  ") if c.strip()] == [
        "Consultation.clinicianNotes",
        "-",
        "if conducted",
        "-",
        "-",
        "-",
    ]
    assert [c.strip() for c in rows["Recording.playbackUrl"].split("  ") if c.strip()] == [
        "Recording.playbackUrl",
        "yes",
        "yes",
        "-",
        "scope patient/Recording.rs",
        "-",
    ]
    assert rows["Consultation"].split() == [
        "Consultation",
        "rows",
        "own",
        "conducted",
        "everyone",
        "consented",
        "-",
    ]


def test_schema_prints_the_exported_sdl():
    result = gateway("schema")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "schema.graphql").read_text()


def test_migrate_is_idempotent_and_seed_is_deterministic(env, postgres_url):
    # env: the roles the migrations grant to exist on the server (provision made them).
    outputs = []
    for _ in range(2):
        url = _fresh_database(postgres_url)
        first = gateway("migrate", "--database-url", url)
        again = gateway("migrate", "--database-url", url)
        assert first.returncode == 0 and first.stdout.startswith("applied: 0001_domain")
        assert again.stdout == "database is up to date\n"
        seeded = gateway(
            "seed",
            "--database-url",
            url,
            "--patients",
            "5",
            "--clinicians",
            "2",
            "--seed",
            "9",
            "--json",
        )
        assert seeded.returncode == 0, seeded.stderr
        outputs.append(json.loads(seeded.stdout))
    assert outputs[0] == outputs[1]
    assert {p["role"] for p in outputs[0]} == {
        "patient",
        "clinician",
        "partner",
        "support",
        "auditor",
    }
    assert len(outputs[0]) == 5 + 2 + 2 + 2


def test_seeding_a_database_that_holds_patients_is_refused(env):
    result = gateway("seed", "--database-url", env.admin_url)
    assert_one_line_failure(result, "already holds patients")


def test_an_unreachable_database_is_one_line(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = gateway("migrate", "--database-url", f"postgresql://x@127.0.0.1:{port}/x")
    assert_one_line_failure(result, "cannot connect to the database")


def test_migrate_reads_the_admin_url_from_a_mounted_secret_file(env, postgres_url, tmp_path):
    """The migration Job mounts its Secret as a file instead of an environment variable."""
    secret = tmp_path / "url"
    secret.write_text(_fresh_database(postgres_url) + "\n")
    result = gateway("migrate", "--database-url-file", str(secret))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("applied: 0001_domain")
    both = gateway("migrate", "--database-url-file", str(secret), "--database-url", "x")
    assert_one_line_failure(both, "give --database-url or --database-url-file, not both")
    absent = gateway("migrate", "--database-url-file", str(tmp_path / "absent"))
    assert_one_line_failure(absent, "cannot read (No such file or directory)")
    neither = gateway("migrate")
    assert_one_line_failure(neither, "Missing option '--database-url'")


@pytest.mark.parametrize(
    "args", [["seed", "--database-url", "x", "--patients", "0"], ["nosuchcommand"], ["token"]]
)
def test_bad_arguments_are_one_line(args):
    result = gateway(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("gateway: ")


def assert_settings_failure(result, *problems: str):
    """Exit 2, nothing on stdout, no traceback, and stderr listing exactly ``problems``."""
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"gateway: {len(problems)} settings are missing or invalid:\n"
        + "".join(f"  {problem}\n" for problem in problems)
    )


def test_serve_with_an_empty_environment_lists_every_missing_setting():
    assert_settings_failure(
        gateway("serve"),
        "DATABASE_URL: required",
        "GATEWAY_JWT_ISSUER: required",
        "GATEWAY_JWT_AUDIENCE: required",
        "set exactly one of GATEWAY_JWKS_URL or GATEWAY_JWKS_FILE",
        "GATEWAY_MEDIA_SIGNING_KEYS is required in production",
        "GATEWAY_MEDIA_ROOT is required when GATEWAY_MEDIA_STORE=local",
    )


def test_serve_lists_several_invalid_settings_and_a_missing_one_in_one_run(tmp_path):
    result = gateway(
        "serve",
        env={
            "DATABASE_URL": "postgresql://gateway@127.0.0.1:1/gateway",
            "GATEWAY_JWT_ISSUER": "https://idp.example",
            "GATEWAY_JWKS_URL": "https://idp.example/jwks.json",
            "GATEWAY_MEDIA_SIGNING_KEYS": "k1:" + "s" * 40,
            "GATEWAY_MEDIA_ROOT": str(tmp_path),
            "GATEWAY_JWT_LEEWAY_SECONDS": "999",
            "GATEWAY_PAGE_SIZE_MAX": "abc",
            "GATEWAY_JWT_ALGORITHMS": "HS256",
        },
    )
    assert_settings_failure(
        result,
        "GATEWAY_JWT_AUDIENCE: required",
        "GATEWAY_JWT_ALGORITHMS: must be asymmetric algorithms, not ['HS256']",
        "GATEWAY_JWT_LEEWAY_SECONDS: Input should be less than or equal to 300",
        "GATEWAY_PAGE_SIZE_MAX: Input should be a valid integer, unable to parse string as an "
        "integer",
    )


def test_serve_names_a_single_bad_setting_on_one_line(tmp_path):
    result = gateway(
        "serve",
        env={
            "GATEWAY_JWT_ISSUER": "https://idp.example",
            "GATEWAY_JWT_AUDIENCE": "gateway",
            "GATEWAY_JWKS_URL": "https://idp.example/jwks.json",
            "GATEWAY_MEDIA_SIGNING_KEYS": "k1:" + "s" * 40,
            "GATEWAY_MEDIA_ROOT": str(tmp_path),
        },
    )
    assert_one_line_failure(result, "gateway: DATABASE_URL: required\n")


def test_dev_lists_both_bad_log_settings_before_starting_postgresql(tmp_path):
    result = gateway(
        "dev",
        "--data-dir",
        str(tmp_path),
        env={"GATEWAY_LOG_FORMAT": "xml", "GATEWAY_LOG_LEVEL": "loud"},
    )
    assert_settings_failure(
        result,
        "GATEWAY_LOG_FORMAT: Input should be 'json' or 'console'",
        "GATEWAY_LOG_LEVEL: Input should be 'debug', 'info', 'warning', 'error' or 'critical'",
    )
    assert not (tmp_path / "pg").exists()


def test_serve_refuses_the_development_identity(env):
    result = gateway(
        "serve",
        env={
            "DATABASE_URL": env.app_url,
            "GATEWAY_JWT_ISSUER": DEV_ISSUER,
            "GATEWAY_JWT_AUDIENCE": "x",
            "GATEWAY_JWKS_FILE": str(env.identity.jwks_file),
            "GATEWAY_MEDIA_SIGNING_KEYS": env.identity.media_keys(),
            "GATEWAY_MEDIA_ROOT": str(env.media_root),
        },
    )
    assert_one_line_failure(result, "development issuer is refused")
    result = gateway(
        "serve",
        env={
            "DATABASE_URL": env.app_url,
            "GATEWAY_JWT_ISSUER": "https://idp.example",
            "GATEWAY_JWT_AUDIENCE": "x",
            "GATEWAY_JWKS_FILE": str(env.identity.jwks_file),
            "GATEWAY_MEDIA_SIGNING_KEYS": env.identity.media_keys(),
            "GATEWAY_MEDIA_ROOT": str(env.media_root),
        },
    )
    assert_one_line_failure(result, "holds a development key")


def test_serve_refuses_a_metrics_port_shared_by_several_workers(env):
    result = gateway(
        "serve",
        "--workers",
        "2",
        env={
            "DATABASE_URL": env.app_url,
            "GATEWAY_JWT_ISSUER": "https://idp.example",
            "GATEWAY_JWT_AUDIENCE": "x",
            "GATEWAY_JWKS_URL": "https://idp.example/jwks.json",
            "GATEWAY_MEDIA_SIGNING_KEYS": env.identity.media_keys(),
            "GATEWAY_MEDIA_ROOT": str(env.media_root),
            "GATEWAY_METRICS_PORT": "9100",
        },
    )
    assert_one_line_failure(result, "GATEWAY_METRICS_PORT")


def test_token_is_refused_in_production(env):
    result = gateway(
        "token",
        "--data-dir",
        str(env.identity.directory),
        "--subject",
        "x",
        env={"GATEWAY_MODE": "production"},
    )
    assert_one_line_failure(result, "refused in production")


def test_dev_gives_a_working_gateway_with_demo_data_graphiql_and_tokens():
    directory = Path(tempfile.mkdtemp(prefix="gateway-dev-test-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "dev",
            "--data-dir",
            str(directory),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway dev did not become ready"
            time.sleep(0.3)
        principals = json.loads((directory / "principals.json").read_text())
        assert {p["role"] for p in principals} == {
            "patient",
            "clinician",
            "partner",
            "support",
            "auditor",
        }
        assert all(set(p) == {"subject", "role", "id"} for p in principals)
        patient = next(p for p in principals if p["role"] == "patient")
        token = gateway(
            "token", "--data-dir", str(directory), "--subject", patient["subject"], "--ttl", "120"
        )
        assert token.returncode == 0, token.stderr
        response = httpx.post(
            f"{base}/graphql",
            headers={"authorization": f"Bearer {token.stdout.strip()}"},
            json={
                "query": "{ me { patient { id } } consultations { edges { node { id "
                "recordings { mode } } } } }"
            },
        )
        body = response.json()
        assert body["data"]["me"]["patient"]["id"] == patient["id"]
        assert body["data"]["consultations"]["edges"]
        page = httpx.get(f"{base}/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        app = httpx.get(f"{base}/app/")
        assert app.status_code == 200 and '<script type="module" src="main.js">' in app.text
        # The app signs in with the provider gateway dev serves: a demo patient, by name.
        issuer = f"{base}/dev/oidc"
        assert f'<meta name="oidc-issuer" content="{issuer}">' in app.text
        signed_in = oidc_sign_in(issuer, patient["subject"], f"{base}/app/")
        me = httpx.post(
            f"{base}/graphql",
            headers={"authorization": f"Bearer {signed_in['access_token']}"},
            json={"query": "{ me { patient { id } } }"},
        )
        assert me.json()["data"]["me"]["patient"]["id"] == patient["id"]
        manifest = httpx.get(f"{base}/app/manifest.json").json()
        replays = next(op["id"] for op in manifest["operations"] if op["name"] == "MyReplays")
        by_hash = httpx.post(
            f"{base}/graphql",
            headers={"authorization": f"Bearer {token.stdout.strip()}"},
            json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": replays}}},
        )
        assert by_hash.json()["data"]["consultations"]["edges"], by_hash.text
        unknown = gateway("token", "--data-dir", str(directory), "--subject", "nobody")
        assert_one_line_failure(unknown, "no account 'nobody'")
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
    assert process.returncode == 0, output
    assert "GraphiQL:" in output
    assert f"Web app:     {base}/app/ (sign in by choosing a demo patient)" in output
