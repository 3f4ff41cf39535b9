"""Probes and scrapes, the only routes without a token: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.authn.jwks import JwksCache
from gateway.data import queries
from gateway.data.edge import Fetch
from gateway.data.live import EventHub
from gateway.errors import ServiceUnavailable
from gateway.ops.metrics import Metrics

__all__ = ["READY_BUDGET_SECONDS", "Health"]

# /readyz answers within this, whatever it waits for: the readiness probe's timeoutSeconds
# (k8s/base/deployment.yaml: 3) is longer, so the kubelet always reads the cause instead of
# timing out on its own. A check still waiting at the deadline is the one /readyz names.
READY_BUDGET_SECONDS = 2.0


class Health:
    def __init__(self, fetch: Fetch, jwks: JwksCache, metrics: Metrics, hub: EventHub) -> None:
        self._fetch = fetch
        self._hub = hub
        self._jwks = jwks
        self._metrics = metrics
        self._checks: dict[str, asyncio.Task[None]] = {}

    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """503 naming the cause until the database answers (the pool's and the subscriptions'
        LISTEN connection, which may go elsewhere: ``GATEWAY_LISTEN_DATABASE_URL``) and the
        JWKS is loaded; within ``READY_BUDGET_SECONDS`` in all. A check still running at the
        deadline goes on in the background (a slow connect or JWKS fetch completes, and the
        next probe finds it done) and is not started twice."""
        deadline = asyncio.get_running_loop().time() + READY_BUDGET_SECONDS
        checks = (
            ("database unavailable", self._database),
            ("listen unavailable", self._hub.ready),
            ("jwks unavailable", self._keys),
        )
        for cause, check in checks:
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.shield(self._running(cause, check))
            except (ServiceUnavailable, TimeoutError):
                return JSONResponse({"status": cause}, status_code=503)
        return JSONResponse({"status": "ready"})

    def _running(self, cause: str, check: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        task = self._checks.get(cause)
        if task is None or task.done():
            task = asyncio.ensure_future(check())
            # Its outcome is read by whoever awaits it; one nobody awaits any more is read here.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._checks[cause] = task
        return task

    async def _database(self) -> None:
        await self._fetch(queries.PING)

    async def _keys(self) -> None:
        if not self._jwks.loaded:
            with contextlib.suppress(Exception):
                await self._jwks.refresh()
            if not self._jwks.loaded:
                raise ServiceUnavailable()

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)
