"""Probes and scrapes, the only routes without a token: liveness, readiness, metrics."""

from __future__ import annotations

import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.authn.jwks import JwksCache
from gateway.data import queries
from gateway.data.live import EventHub
from gateway.data.loaders import Fetch
from gateway.errors import ServiceUnavailable
from gateway.ops.metrics import Metrics

__all__ = ["Health"]


class Health:
    def __init__(self, fetch: Fetch, jwks: JwksCache, metrics: Metrics, hub: EventHub) -> None:
        self._fetch = fetch
        self._hub = hub
        self._jwks = jwks
        self._metrics = metrics

    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """503 naming the cause until the database answers (the pool's and the subscriptions'
        LISTEN connection, which may go elsewhere: ``GATEWAY_LISTEN_DATABASE_URL``) and the
        JWKS is loaded."""
        try:
            await self._fetch(queries.PING)
        except ServiceUnavailable:
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        try:
            await self._hub.ready()
        except ServiceUnavailable:
            return JSONResponse({"status": "listen unavailable"}, status_code=503)
        if not self._jwks.loaded:
            with contextlib.suppress(Exception):
                await self._jwks.refresh()
            if not self._jwks.loaded:
                return JSONResponse({"status": "jwks unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)
