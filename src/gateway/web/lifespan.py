"""What the application holds beyond a request, opened when it starts and closed when it stops.

The resources are made when the app is assembled, so that every endpoint can be handed them;
nothing is opened until the lifespan starts: the database pool, a first fetch of the signing
keys, the account-change listener and the metrics port. At shutdown each is closed on its own,
so that one failing (a dead database) does not skip the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette

from gateway.authn.jwks import JwksCache
from gateway.config import Settings
from gateway.data.account_changes import AccountChanges
from gateway.data.edge import DatabaseEdge
from gateway.data.live import EventHub
from gateway.data.pool import Database
from gateway.ops.metrics import Metrics
from gateway.ops.metrics_server import serve_metrics
from gateway.ops.tracing import Tracing

__all__ = ["Resources"]

# The longest each step of shutdown may take: about 5 + 5 + 5 s at worst, after uvicorn's
# GATEWAY_SHUTDOWN_GRACE_SECONDS.
_CLOSE_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Resources:
    """The app's long-lived parts. ``database``, when given (tests sabotage lower layers with
    one), is used instead of a pool made from ``DATABASE_URL``, and left open at shutdown."""

    settings: Settings
    metrics: Metrics
    tracing: Tracing | None
    edge: DatabaseEdge
    jwks: JwksCache
    account_changes: AccountChanges
    hub: EventHub
    database: Database | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Starlette's lifespan: open everything, serve, close everything."""
        settings = self.settings
        self.edge.database = self.database or await Database.connect(settings)
        with contextlib.suppress(Exception):
            await self.jwks.refresh()
        if settings.account_cache_size:
            self.account_changes.start()
        if settings.metrics_port is not None:
            app.state.metrics_server = serve_metrics(settings.metrics_port, self.metrics.registry)
        try:
            yield
        finally:
            await self._close(app)

    async def _close(self, app: Starlette) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.hub.close(), _CLOSE_SECONDS)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.account_changes.close(), _CLOSE_SECONDS)
        if self.database is None and self.edge.database is not None:
            with contextlib.suppress(Exception):
                await self.edge.database.close()
        self.edge.database = None
        if self.settings.metrics_port is not None:
            app.state.metrics_server.shutdown()
            app.state.metrics_server.server_close()
        if self.tracing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self.tracing.shutdown), _CLOSE_SECONDS)
