"""``gateway serve``: production mode, settings from the environment."""

from __future__ import annotations

import json
import signal
from typing import Any

import click

from gateway.cli.running import fail, run
from gateway.config import DEV_ISSUER, DEV_KEY_PREFIX, Mode, Settings, load_settings
from gateway.errors import ConfigurationError

__all__ = ["refuse_development_identity", "serve", "uvicorn_logging"]


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


@click.command()
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
        fail("GATEWAY_METRICS_PORT: serves one worker's metrics; use --workers 1 (scale pods)")

    async def check() -> None:
        from gateway.data.pool import Database

        database = await Database.connect(settings)
        await database.close()

    run(check())
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
        **uvicorn_logging(settings),
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def uvicorn_logging(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging arguments: the gateway's one setup, no access log (the gateway writes
    its own line per request)."""
    from gateway.ops.logs import logging_config

    return {
        "log_config": logging_config(settings),
        "log_level": settings.log_level,
        "access_log": False,
    }
