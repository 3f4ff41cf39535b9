"""Settings: one frozen object; every bad or missing variable is named, all of them at once."""

from __future__ import annotations

import os

import pytest

from gateway.config import _RULES, Mode, Settings, load_settings
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


def _problems(environ) -> str:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ)
    return raised.value.message


def test_an_empty_environment_lists_every_missing_setting_and_broken_rule_at_once():
    assert _problems({}) == (
        "6 settings are missing or invalid:\n"
        "  DATABASE_URL: required\n"
        "  GATEWAY_JWT_ISSUER: required\n"
        "  GATEWAY_JWT_AUDIENCE: required\n"
        "  set exactly one of GATEWAY_JWKS_URL or GATEWAY_JWKS_FILE\n"
        "  GATEWAY_MEDIA_SIGNING_KEYS is required in production\n"
        "  GATEWAY_MEDIA_ROOT is required when GATEWAY_MEDIA_STORE=local"
    )


def test_several_invalid_values_and_a_missing_one_are_listed_in_declaration_order():
    environ = {k: v for k, v in BASE.items() if k != "GATEWAY_JWT_AUDIENCE"}
    environ |= {
        "GATEWAY_PAGE_SIZE_MAX": "abc",
        "GATEWAY_JWT_LEEWAY_SECONDS": "999",
        "GATEWAY_JWT_ALGORITHMS": "HS256",
    }
    assert _problems(environ).splitlines() == [
        "4 settings are missing or invalid:",
        "  GATEWAY_JWT_AUDIENCE: required",
        "  GATEWAY_JWT_ALGORITHMS: must be asymmetric algorithms, not ['HS256']",
        "  GATEWAY_JWT_LEEWAY_SECONDS: Input should be less than or equal to 300",
        "  GATEWAY_PAGE_SIZE_MAX: Input should be a valid integer, unable to parse string as an"
        " integer",
    ]
    assert _problems(dict(reversed(environ.items()))) == _problems(environ)


def test_rules_are_checked_beside_field_errors():
    environ = {
        k: v
        for k, v in BASE.items()
        if k not in {"DATABASE_URL", "GATEWAY_MEDIA_SIGNING_KEYS", "GATEWAY_MEDIA_ROOT"}
    }
    environ |= {
        "GATEWAY_JWKS_FILE": "/etc/jwks.json",
        "GATEWAY_MAX_ALIASES": "0",
        "GATEWAY_PAGE_SIZE_DEFAULT": "500",
        "GATEWAY_BREAK_GLASS_DEFAULT_MINUTES": "300",
    }
    assert _problems(environ).splitlines()[1:] == [
        "  DATABASE_URL: required",
        "  set exactly one of GATEWAY_JWKS_URL or GATEWAY_JWKS_FILE",
        "  GATEWAY_PAGE_SIZE_DEFAULT exceeds GATEWAY_PAGE_SIZE_MAX",
        "  GATEWAY_MAX_ALIASES: Input should be greater than or equal to 1",
        "  GATEWAY_MEDIA_SIGNING_KEYS is required in production",
        "  GATEWAY_BREAK_GLASS_DEFAULT_MINUTES exceeds GATEWAY_BREAK_GLASS_MAX_MINUTES",
        "  GATEWAY_MEDIA_ROOT is required when GATEWAY_MEDIA_STORE=local",
    ]


def test_a_rule_with_an_input_that_did_not_validate_is_left_out_and_the_input_named():
    """A comparison or a presence check on a value that did not validate would be a guess."""
    environ = {k: v for k, v in BASE.items() if k != "DATABASE_URL"}
    compared = {**environ, "GATEWAY_PAGE_SIZE_DEFAULT": "500", "GATEWAY_PAGE_SIZE_MAX": "abc"}
    assert _problems(compared).splitlines()[1:] == [
        "  DATABASE_URL: required",
        "  GATEWAY_PAGE_SIZE_MAX: Input should be a valid integer, unable to parse string as an"
        " integer",
    ]
    switches = {
        k: v
        for k, v in environ.items()
        if k not in {"GATEWAY_MEDIA_SIGNING_KEYS", "GATEWAY_MEDIA_ROOT"}
    }
    switches |= {"GATEWAY_MODE": "prod", "GATEWAY_MEDIA_STORE": "ftp"}
    assert _problems(switches).splitlines()[1:] == [
        "  GATEWAY_MODE: Input should be 'production' or 'development'",
        "  DATABASE_URL: required",
        "  GATEWAY_MEDIA_STORE: Input should be 'local' or 's3'",
    ]


def test_one_problem_is_one_line_without_a_count():
    message = _problems({**BASE, "GATEWAY_JWT_LEEWAY_SECONDS": "-1"})
    assert message == "GATEWAY_JWT_LEEWAY_SECONDS: Input should be greater than or equal to 0"


def test_format_checks_of_one_variable_are_its_own_errors_and_never_echo_a_secret():
    environ = {k: v for k, v in BASE.items() if k != "DATABASE_URL"}
    message = _problems(
        {**environ, "GATEWAY_MEDIA_SIGNING_KEYS": "k1:short-secret", "GATEWAY_JWT_ALGORITHMS": ""}
    )
    assert message.splitlines()[1:] == [
        "  DATABASE_URL: required",
        "  GATEWAY_JWT_ALGORITHMS: name at least one asymmetric algorithm",
        "  GATEWAY_MEDIA_SIGNING_KEYS: each entry is key-id:secret, secret >= 32 chars",
    ]
    assert "short-secret" not in message


def test_each_rule_reads_fields_in_declaration_order_and_ends_at_a_field_of_its_own():
    """A rule runs when its last field validates, reading the earlier ones already validated."""
    order = list(Settings.model_fields)
    for rule in _RULES:
        positions = [order.index(name) for name in rule.fields]
        assert positions == sorted(positions), rule.message
    last = [rule.fields[-1] for rule in _RULES]
    assert len(set(last)) == len(last)


def test_a_mounted_secrets_folder_reports_every_problem_too(tmp_path, monkeypatch):
    _environment_without_secrets(monkeypatch)
    monkeypatch.setenv("GATEWAY_PAGE_SIZE_MAX", "abc")
    (tmp_path / "GATEWAY_JWT_LEEWAY_SECONDS").write_text("999")
    monkeypatch.setenv("GATEWAY_SECRETS_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert raised.value.message.splitlines() == [
        "4 settings are missing or invalid:",
        "  DATABASE_URL: required",
        "  GATEWAY_JWT_LEEWAY_SECONDS: Input should be less than or equal to 300",
        "  GATEWAY_PAGE_SIZE_MAX: Input should be a valid integer, unable to parse string as an"
        " integer",
        "  GATEWAY_MEDIA_SIGNING_KEYS is required in production",
    ]


def test_a_wildcard_cors_origin_is_refused():
    """Playbacks start with credentials (``Access-Control-Allow-Credentials``): with ``*`` every
    origin's script could start one and read the media with a viewer's cookie."""
    with pytest.raises(ConfigurationError) as refused:
        load_settings({**BASE, "GATEWAY_CORS_ORIGINS": "https://app.example.org,*"})
    assert refused.value.message == (
        "GATEWAY_CORS_ORIGINS: list the web apps' origins; '*' is refused (playback starts "
        "with credentials)"
    )
    listed = load_settings({**BASE, "GATEWAY_CORS_ORIGINS": "https://app.example.org"})
    assert listed.cors_origins == ("https://app.example.org",)
