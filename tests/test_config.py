"""Settings: one frozen object; every bad or missing variable is named."""

from __future__ import annotations

import os

import pytest

from gateway.config import Mode, load_settings
from gateway.errors import ConfigurationError

BASE = {
    "DATABASE_URL": "postgresql://gateway@db/gateway",
    "GATEWAY_JWT_ISSUER": "https://idp.example",
    "GATEWAY_JWT_AUDIENCE": "gateway",
    "GATEWAY_JWKS_URL": "https://idp.example/jwks.json",
    "GATEWAY_MEDIA_SIGNING_KEYS": "k1:" + "s" * 40,
    "GATEWAY_MEDIA_ROOT": "/srv/media",
}


def test_production_is_the_default_mode():
    settings = load_settings(BASE)
    assert settings.mode is Mode.PRODUCTION
    assert not settings.development


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("DATABASE_URL", "DATABASE_URL"),
        ("GATEWAY_JWT_AUDIENCE", "GATEWAY_JWT_AUDIENCE"),
        ("GATEWAY_JWT_ISSUER", "GATEWAY_JWT_ISSUER"),
    ],
)
def test_a_missing_variable_is_named(missing, named):
    environ = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigurationError, match=rf"^{named}: "):
        load_settings(environ)


def test_a_bad_number_is_named():
    with pytest.raises(ConfigurationError, match=r"^GATEWAY_PAGE_SIZE_MAX: "):
        load_settings({**BASE, "GATEWAY_PAGE_SIZE_MAX": "lots"})


def test_symmetric_algorithms_are_refused():
    with pytest.raises(ConfigurationError, match="asymmetric"):
        load_settings({**BASE, "GATEWAY_JWT_ALGORITHMS": "RS256,HS256"})


def test_exactly_one_jwks_source_is_required():
    with pytest.raises(ConfigurationError, match="exactly one of GATEWAY_JWKS_URL"):
        load_settings({**BASE, "GATEWAY_JWKS_FILE": "/etc/jwks.json"})


def test_production_requires_media_signing_keys():
    environ = {k: v for k, v in BASE.items() if k != "GATEWAY_MEDIA_SIGNING_KEYS"}
    with pytest.raises(ConfigurationError, match="GATEWAY_MEDIA_SIGNING_KEYS"):
        load_settings(environ)


def test_short_media_secrets_are_refused():
    with pytest.raises(ConfigurationError, match=r"secret >= 32"):
        load_settings({**BASE, "GATEWAY_MEDIA_SIGNING_KEYS": "k1:short"})


def test_the_s3_store_needs_a_bucket():
    with pytest.raises(ConfigurationError, match="GATEWAY_MEDIA_S3_BUCKET is required"):
        load_settings({**BASE, "GATEWAY_MEDIA_STORE": "s3"})


def _environment_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GATEWAY_") or key == "DATABASE_URL":
            monkeypatch.delenv(key)
    for key, value in BASE.items():
        if key not in {"DATABASE_URL", "GATEWAY_MEDIA_SIGNING_KEYS"}:
            monkeypatch.setenv(key, value)


def test_secrets_can_be_files_of_a_mounted_secret(tmp_path, monkeypatch):
    """A Kubernetes Secret mounted as files (GATEWAY_SECRETS_DIR) supplies the database URL and
    the signing keys, so they need not sit in the process environment."""
    _environment_without_secrets(monkeypatch)
    (tmp_path / "DATABASE_URL").write_text("postgresql://login:pw@db-pooler/gateway\n")
    (tmp_path / "GATEWAY_MEDIA_SIGNING_KEYS").write_text("k2:" + "t" * 40 + "\n")
    monkeypatch.setenv("GATEWAY_SECRETS_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.database_url == "postgresql://login:pw@db-pooler/gateway"
    assert settings.signing_keys() == (("k2", b"t" * 40),)
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/gateway")
    assert load_settings().database_url == "postgresql://from-env/gateway"


def test_a_missing_secrets_folder_is_named(tmp_path, monkeypatch):
    _environment_without_secrets(monkeypatch)
    monkeypatch.setenv("GATEWAY_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(ConfigurationError, match=r"^GATEWAY_SECRETS_DIR: .* is not a directory$"):
        load_settings()


def test_observability_defaults_are_json_logs_at_info_metrics_on_the_main_port_no_tracing():
    settings = load_settings(BASE)
    assert (settings.log_format, settings.log_level) == ("json", "info")
    assert settings.metrics_port is None
    assert settings.traces_endpoint is None
    assert settings.otel_service_name == "consultation-gateway"


@pytest.mark.parametrize(
    ("variables", "endpoint"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
            "http://collector:4318/v1/traces",
        ),
        ({"GATEWAY_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/traces"}, "http://c/traces"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "GATEWAY_OTLP_TRACES_ENDPOINT": "http://c/traces",
            },
            "http://c/traces",
        ),
    ],
)
def test_tracing_follows_opentelemetrys_standard_variables(variables, endpoint):
    assert load_settings({**BASE, **variables}).traces_endpoint == endpoint


def test_observability_settings_are_named_when_bad():
    with pytest.raises(ConfigurationError, match=r"^GATEWAY_LOG_FORMAT: "):
        load_settings({**BASE, "GATEWAY_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigurationError, match=r"^GATEWAY_METRICS_PORT: "):
        load_settings({**BASE, "GATEWAY_METRICS_PORT": "70000"})


def test_a_statement_timeout_of_zero_means_none_sent_and_negative_is_named():
    assert (
        load_settings({**BASE, "GATEWAY_DB_STATEMENT_TIMEOUT_MS": "0"}).db_statement_timeout_ms == 0
    )
    with pytest.raises(ConfigurationError, match=r"^GATEWAY_DB_STATEMENT_TIMEOUT_MS: "):
        load_settings({**BASE, "GATEWAY_DB_STATEMENT_TIMEOUT_MS": "-1"})


def test_the_shutdown_grace_ends_before_kubernetes_kills_the_pod():
    assert load_settings(BASE).shutdown_grace_seconds < 30  # terminationGracePeriodSeconds
    with pytest.raises(ConfigurationError, match=r"^GATEWAY_SHUTDOWN_GRACE_SECONDS: "):
        load_settings({**BASE, "GATEWAY_SHUTDOWN_GRACE_SECONDS": "0"})
