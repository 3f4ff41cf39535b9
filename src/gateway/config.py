"""One frozen settings object, read from the environment once at start.

No other module reads ``os.environ``. Every bad or missing variable is reported at once, each by
its environment name, in one ``ConfigurationError`` (``GATEWAY_JWT_AUDIENCE: required``, one
line per problem). Checks across settings (``_RULES``) run on the values that validated, so they
are reported beside the fields' own errors.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.errors import ConfigurationError

__all__ = ["DEV_ISSUER", "Mode", "Settings", "env_name", "load_settings"]

DEV_ISSUER = "urn:consultation-gateway:development"
DEV_KEY_PREFIX = "gateway-dev-"
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class Mode(StrEnum):
    PRODUCTION = "production"
    DEVELOPMENT = "development"


def _signing_keys(text: str) -> tuple[tuple[str, bytes], ...]:
    """``kid:secret,...`` as (key id, secret) pairs; ValueError names the format, never a key."""
    keys = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        kid, sep, secret = item.partition(":")
        if not sep or not kid or len(secret) < 32:
            raise ValueError("each entry is key-id:secret, secret >= 32 chars")
        keys.append((kid, secret.encode()))
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class _Rule:
    """A check across settings: ``broken`` gets the values of ``fields``, which are listed in
    the order ``Settings`` declares them (a test keeps it so)."""

    fields: tuple[str, ...]
    broken: Callable[..., bool]
    message: str


_RULES = (
    _Rule(
        ("jwks_url", "jwks_file"),
        lambda url, file: (url is None) == (file is None),
        "set exactly one of GATEWAY_JWKS_URL or GATEWAY_JWKS_FILE",
    ),
    _Rule(
        ("mode", "media_signing_keys"),
        lambda mode, keys: mode is Mode.PRODUCTION and not _signing_keys(keys),
        "GATEWAY_MEDIA_SIGNING_KEYS is required in production",
    ),
    _Rule(
        ("break_glass_default_minutes", "break_glass_max_minutes"),
        operator.gt,
        "GATEWAY_BREAK_GLASS_DEFAULT_MINUTES exceeds GATEWAY_BREAK_GLASS_MAX_MINUTES",
    ),
    _Rule(
        ("consent_max_days", "consent_request_days"),
        operator.lt,
        "GATEWAY_CONSENT_REQUEST_DAYS exceeds GATEWAY_CONSENT_MAX_DAYS",
    ),
    _Rule(
        ("page_size_default", "page_size_max"),
        operator.gt,
        "GATEWAY_PAGE_SIZE_DEFAULT exceeds GATEWAY_PAGE_SIZE_MAX",
    ),
    _Rule(
        ("media_store", "media_root"),
        lambda store, root: store == "local" and root is None,
        "GATEWAY_MEDIA_ROOT is required when GATEWAY_MEDIA_STORE=local",
    ),
    _Rule(
        ("media_store", "media_s3_bucket"),
        lambda store, bucket: store == "s3" and not bucket,
        "GATEWAY_MEDIA_S3_BUCKET is required when GATEWAY_MEDIA_STORE=s3",
    ),
)
# The error type of a broken rule: its message names its variables itself.
_RULE_ERROR = "settings_rule"


class Settings(BaseSettings):
    """Everything the gateway can be told. Environment names are ``GATEWAY_<FIELD>`` except
    ``DATABASE_URL`` and OpenTelemetry's standard ``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` and ``OTEL_SERVICE_NAME`` (each also accepted as
    ``GATEWAY_<FIELD>``)."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        # Each field's docstring is its description: docs/OPERATIONS.md's table is made of them.
        use_attribute_docstrings=True,
    )

    mode: Mode = Mode.PRODUCTION
    """`development` enables GraphiQL, introspection, suggestions and the explain extension;
    `serve` warns unless `production`"""
    database_url: str = Field(validation_alias=AliasChoices("DATABASE_URL", "GATEWAY_DATABASE_URL"))
    """the application's login role (member of `gateway_app`, owning nothing, NOBYPASSRLS: checked
    at start); through PgBouncer in production"""
    listen_database_url: str | None = None
    """the LISTEN connections (subscriptions; changes of accounts), directly to the primary: LISTEN
    does not work through PgBouncer in transaction mode; none: `DATABASE_URL`"""
    jwt_issuer: str
    """expected `iss` of access tokens"""
    jwt_audience: str
    """expected `aud` of access tokens"""
    jwks_url: str | None = None
    """the identity provider's JWKS (HTTPS); exactly one of this and `GATEWAY_JWKS_FILE`"""
    jwks_file: Path | None = None
    """a JWKS file instead of a URL (a development identity is refused by `serve`)"""
    jwt_algorithms: Annotated[frozenset[str], NoDecode] = frozenset(
        {"RS256", "PS256", "ES256", "EdDSA"}
    )
    """accepted signature algorithms, comma-separated; asymmetric only"""
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    """clock skew allowed on `exp`, `nbf`, `iat` (0-300)"""
    token_cache_size: int = Field(default=10000, ge=0, le=1_000_000)
    """verified tokens remembered (by SHA-256) until they expire, so a client's next request is not
    verified again; a key the JWKS withdraws ends them; 0: verify every request"""
    account_cache_size: int = Field(default=10000, ge=0, le=1_000_000)
    """accounts remembered by (issuer, subject) between requests, while the gateway listens for
    changes of accounts and partners (each change forgets them all; nothing is remembered while
    the listener is down); 0: read the account on every request"""
    jwks_min_refresh_seconds: float = Field(default=30.0, ge=0)
    """an unknown `kid` refetches the JWKS at most this often"""
    jwks_max_age_seconds: float = Field(default=3600.0, gt=0)
    """keys are refetched after this, so withdrawn keys stop verifying"""
    db_pool_min_size: int = Field(default=1, ge=0)
    """connections kept open per replica"""
    db_pool_max_size: int = Field(default=10, ge=1)
    """most connections per replica (plus two LISTEN connections)"""
    db_statement_timeout_ms: int = Field(
        default=5000,
        ge=0,
    )
    """sent as the connection's `statement_timeout`: a statement running (or waiting for a lock)
    longer is cancelled and the request gets 503; `0` sends none, so the login role's own
    setting applies (PgBouncer in transaction mode refuses it as a startup parameter)"""
    db_acquire_timeout_seconds: float = Field(default=2.0, gt=0)
    """wait for a pooled connection, then 503 + Retry-After"""
    db_statement_cache_size: int = Field(default=256, ge=0)
    """asyncpg's prepared-statement cache; `0` behind PgBouncer < 1.21 in transaction mode"""
    page_size_default: int = Field(default=20, ge=1)
    """`first` of a connection when not given"""
    page_size_max: int = Field(default=100, ge=1)
    """largest `first` accepted (BAD_USER_INPUT past it)"""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """larger request bodies get 413"""
    max_query_depth: int = Field(default=12, ge=2)
    """document limit: nesting depth"""
    max_aliases: int = Field(default=100, ge=1)
    """document limit: aliases per document"""
    max_tokens: int = Field(default=5000, ge=10)
    """document limit: lexer tokens, checked before parsing completes"""
    max_directives: int = Field(default=20, ge=0)
    """document limit: directives per document"""
    max_query_cost: int = Field(default=20000, ge=1)
    """document limit: estimated cost, lists multiplied by `first`"""
    max_query_chars: int = Field(default=20000, ge=100)
    """document limit: characters of the query text"""
    request_timeout_seconds: float = Field(default=15.0, gt=0)
    """a request still running after this gets 503 + Retry-After"""
    max_concurrent_requests: int = Field(default=200, ge=1)
    """requests executing at once per replica; more get 503 + Retry-After"""
    shutdown_grace_seconds: int = Field(
        default=20,
        ge=1,
    )
    """after SIGTERM, how long requests in flight may take before they are cut (503); the
    manifests' 45 s termination grace covers it plus closing"""
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """browser origins allowed to call `/graphql` and start playbacks, comma-separated (a web
    app served apart, same-site with the gateway: media then answer
    `Cross-Origin-Resource-Policy: same-site`); `*` is refused; none: no CORS headers"""
    websocket_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """other origins whose pages may open subscriptions, comma-separated; none:
    `GATEWAY_CORS_ORIGINS` (same-origin and non-browser clients always may)"""
    max_subscriptions_per_connection: int = Field(default=10, ge=1)
    """subscriptions one WebSocket connection may hold"""
    rate_limit_requests_per_minute: int = Field(default=600, ge=1)
    """per principal per replica (429 past it)"""
    rate_limit_field_calls_per_minute: int = Field(default=300, ge=1)
    """per principal per root field per replica, aliases counted (429)"""
    trusted_documents: Path | None = None
    """manifest of persisted operations (Apollo format, `gateway manifest build`)"""
    free_form_documents: Literal["everyone", "developers", "nobody"] | None = None
    """who may send documents not in the manifest: `everyone`, `developers` or `nobody`; default
    `developers` in production, `everyone` in development"""
    playback_url_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    """lifetime of a signed playback URL (10-3600)"""
    playback_range_max_bytes: int = Field(default=2_097_152, ge=1024)
    """most bytes one Range request of a browser playback gets (an open or longer range is cut
    to this): each further piece is a new request, checked again, so lost access stops an open
    stream within this many bytes"""
    media_signing_keys: str = Field(
        default="",
    )
    """`kid:secret,...` (each secret at least 32 characters): the first signs playback URLs, all
    verify; required in production"""
    public_base_url: str = ""
    """prefix of playback URLs (the gateway's public address)"""
    break_glass_default_minutes: int = Field(default=60, ge=1)
    """break-glass duration when the clinician does not give one"""
    break_glass_max_minutes: int = Field(default=240, ge=1)
    """longest break-glass a clinician may ask for (the database caps it at 24 h)"""
    break_glass_min_reason_length: int = Field(default=20, ge=1)
    """characters a break-glass reason needs"""
    consent_max_days: int = Field(default=730, ge=1)
    """longest consent a patient may grant (the database caps it at 3 years)"""
    consent_request_days: int = Field(default=90, ge=1)
    """how long a consent approved on the consent page lasts"""
    media_store: Literal["local", "s3"] = "local"
    """`local` (files under `GATEWAY_MEDIA_ROOT`) or `s3` (presigned redirects; the `s3` extra)"""
    media_root: Path | None = None
    """folder of recordings by storage key; required for `local`"""
    media_s3_bucket: str | None = None
    """bucket of recordings; required for `s3`"""
    media_s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, Ceph); none: AWS"""
    media_s3_region: str | None = None
    """region of the bucket"""
    media_presign_seconds: int = Field(default=60, ge=1, le=900)
    """lifetime of a presigned redirect (1-900)"""
    audit_archive_root: Path | None = None
    """folder of the audit trail's archived months (`gateway audit archive`); none: the media
    store's bucket under `audit-archive/` when `GATEWAY_MEDIA_STORE=s3`"""
    audit_anchor: str | None = None
    """where `gateway audit verify` keeps the chains' heads outside the database, a folder or
    `s3://bucket/prefix` (writable by the verify job alone, versions kept): each run starts
    from them and writes the heads it verified; none: the trail is verified against itself"""
    audit_retention: str = Field(default="6y", pattern=r"^[1-9][0-9]{0,3}(y|mo)$")
    """how long an archived month is kept after it ends, in years (`6y`) or months (`72mo`);
    `gateway audit archive` deletes older archives and audits each deletion"""
    log_format: Literal["json", "console"] = Field(
        default="json",
    )
    """`json` (one object per line) or `console` (text for people); `gateway dev` defaults to
    `console`"""
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info",
    )
    """least severe level logged, for the gateway's loggers and uvicorn's"""
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
    )
    """serve `/metrics` on this port (all interfaces) instead of the main one, where it then
    answers 404; one worker per process"""
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "GATEWAY_OTLP_ENDPOINT"),
    )
    """base URL of an OTLP/HTTP receiver (traces go to `URL/v1/traces`); tracing is off unless
    this or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (extra `tracing`)"""
    otlp_traces_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "GATEWAY_OTLP_TRACES_ENDPOINT"
        ),
    )
    """full URL trace exports are POSTed to; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`"""
    otel_service_name: str = Field(
        default="consultation-gateway",
        validation_alias=AliasChoices("OTEL_SERVICE_NAME", "GATEWAY_OTEL_SERVICE_NAME"),
    )
    """`service.name` of the spans"""

    @field_validator("cors_origins", "websocket_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "*" in value:
            raise ValueError(
                "list the web apps' origins; '*' is refused (playback starts with credentials)"
            )
        return value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: frozenset[str]) -> frozenset[str]:
        if not value:
            raise ValueError("name at least one asymmetric algorithm")
        bad = value - ASYMMETRIC_ALGORITHMS
        if bad:
            raise ValueError(f"must be asymmetric algorithms, not {sorted(bad)}")
        return value

    @field_validator("media_signing_keys")
    @classmethod
    def _check_signing_keys(cls, value: str) -> str:
        _signing_keys(value)
        return value

    @field_validator(*(rule.fields[-1] for rule in _RULES))
    @classmethod
    def _check_rules(cls, value: Any, info: ValidationInfo) -> Any:
        """The rules ending at this field. Fields validate in declaration order, so
        ``info.data`` holds the earlier fields that validated (defaults are validated too); a
        rule with an input that did not validate is skipped, its input reported instead."""
        for rule in _RULES:
            *earlier, last = rule.fields
            if last != info.field_name or any(name not in info.data for name in earlier):
                continue
            if rule.broken(*(info.data[name] for name in earlier), value):
                raise PydanticCustomError(_RULE_ERROR, rule.message)
        return value

    @property
    def audit_retention_months(self) -> int:
        return retention_months(self.audit_retention)

    @property
    def traces_endpoint(self) -> str | None:
        """Where spans are exported, or None when tracing is off."""
        if self.otlp_traces_endpoint:
            return self.otlp_traces_endpoint
        if self.otlp_endpoint:
            return self.otlp_endpoint.rstrip("/") + "/v1/traces"
        return None

    @property
    def listen_url(self) -> str:
        return self.listen_database_url or self.database_url

    @property
    def development(self) -> bool:
        return self.mode is Mode.DEVELOPMENT

    @property
    def free_form(self) -> str:
        """Who may send free-form documents: everyone in development, developers in
        production, unless set."""
        if self.free_form_documents is not None:
            return self.free_form_documents
        return "everyone" if self.development else "developers"

    def signing_keys(self) -> tuple[tuple[str, bytes], ...]:
        """(key id, secret) pairs for playback URLs, the signing key first."""
        return _signing_keys(self.media_signing_keys)


# Variables read under their own names, as OpenTelemetry's documentation spells them.
_STANDARD_NAMES = {
    "otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "otlp_traces_endpoint": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "otel_service_name": "OTEL_SERVICE_NAME",
}


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    if field in {"database_url", "DATABASE_URL"}:
        return "DATABASE_URL"
    if field in _STANDARD_NAMES or field in _STANDARD_NAMES.values():
        return _STANDARD_NAMES.get(field, field)
    return f"GATEWAY_{field.upper()}"


def retention_months(value: str) -> int:
    """``GATEWAY_AUDIT_RETENTION`` in months: ``6y`` is 72, ``18mo`` is 18."""
    return int(value[:-1]) * 12 if value.endswith("y") else int(value[:-2])


class _Some(BaseSettings):
    model_config = Settings.model_config


def load_settings_of(*names: str) -> Any:
    """Only the settings named (fields of ``Settings``, validated as it validates them), from the
    process environment: for a command that needs those and no more, such as `gateway audit
    archive`, which must not ask for the server's."""
    fields: Any = {
        name: (Settings.model_fields[name].annotation, Settings.model_fields[name])
        for name in names
    }
    model = create_model("SomeSettings", __base__=_Some, **fields)
    try:
        secrets_dir = os.environ.get("GATEWAY_SECRETS_DIR")
        return model(_secrets_dir=secrets_dir) if secrets_dir else model()
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors(include_url=False)]
        raise ConfigurationError(_report(problems)) from None


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``environ`` (the process environment when None) plus overrides.

    From the process environment, ``GATEWAY_SECRETS_DIR`` names a folder of files, one per
    setting, named like its variable (``DATABASE_URL``, ``GATEWAY_MEDIA_SIGNING_KEYS``): a
    Kubernetes Secret mounted as a volume, so secrets need not sit in the environment.
    Environment variables win over files. Every problem is reported in one
    ``ConfigurationError`` (see ``_report``)."""
    try:
        if environ is None:
            secrets_dir = os.environ.get("GATEWAY_SECRETS_DIR")
            if secrets_dir is None:
                return Settings(**overrides)
            if not Path(secrets_dir).is_dir():
                raise ConfigurationError(f"GATEWAY_SECRETS_DIR: {secrets_dir} is not a directory")
            return Settings(_secrets_dir=secrets_dir, **overrides)
        values: dict[str, Any] = {
            key.removeprefix("GATEWAY_").lower(): value
            for key, value in environ.items()
            if key.startswith("GATEWAY_")
        }
        for name in ("DATABASE_URL", *_STANDARD_NAMES.values()):
            if name in environ:
                values[name] = environ[name]
        values.update(overrides)
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors(include_url=False)]
        raise ConfigurationError(_report(problems)) from None


def _problem(error: ErrorDetails) -> str:
    """One validation error as ``VARIABLE: message`` (a broken rule names its variables)."""
    if error["type"] == _RULE_ERROR:
        return error["msg"]
    message = "required" if error["type"] == "missing" else error["msg"]
    message = message.removeprefix("Value error, ")
    return f"{env_name(str(error['loc'][0]))}: {message}" if error["loc"] else message


def _report(problems: list[str]) -> str:
    """One problem as itself; several as a count and one indented line each, in the order the
    settings are declared (duplicates once)."""
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        return unique[0]
    lines = "".join(f"\n  {problem}" for problem in unique)
    return f"{len(unique)} settings are missing or invalid:{lines}"
