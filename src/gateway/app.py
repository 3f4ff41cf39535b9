"""``create_app``: the ASGI application, assembled from settings.

This is the one engine module that imports the schema (``resolvers``); everything else in the
engine is imported by resolvers, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit import AccessEventWriter
from gateway.auth import Authenticator, JwksCache, TokenVerifier
from gateway.config import Settings
from gateway.db import Database
from gateway.documents import FreeForm, TrustedDocuments
from gateway.errors import ServiceUnavailable
from gateway.events import ConnectionContext, EventHub
from gateway.exitcheck import ExitCheck
from gateway.graphiql import ASSET_ROUTE, GraphiQL
from gateway.http import GraphQLEndpoint
from gateway.media import PlaybackSigner
from gateway.media_endpoint import MediaEndpoint
from gateway.metrics import Metrics
from gateway.observe import RequestObserver
from gateway.ratelimit import RateLimiter
from gateway.shutdown import CutOnShutdown
from gateway.storage import LocalMediaStore, MediaStore, S3MediaStore
from gateway.subscriptions import SubscriptionEndpoint
from gateway.tracing import Tracing

__all__ = ["create_app", "create_app_from_environment"]


class SecurityHeaders:
    """Headers every response carries, whatever route produced it."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-resource-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in self.HEADERS if n not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


class _Deferred:
    """Forwards calls to the Database once the lifespan has opened it; counts statements and,
    when tracing, makes a span of each."""

    def __init__(self, metrics: Metrics, tracing: Tracing | None) -> None:
        self.database: Database | None = None
        self._statements = metrics.db_statements
        self._tracing = tracing

    async def fetch(self, statement: str, *args: Any) -> list[Any]:
        if self.database is None:
            raise ServiceUnavailable()
        self._statements.inc()
        if self._tracing is None:
            return await self.database.fetch(statement, *args)
        with self._tracing.statement(statement):
            return await self.database.fetch(statement, *args)

    async def execute(self, statement: str, *args: Any) -> None:
        if self.database is None:
            raise ServiceUnavailable()
        self._statements.inc()
        if self._tracing is None:
            await self.database.execute(statement, *args)
            return
        with self._tracing.statement(statement):
            await self.database.execute(statement, *args)

    def pool_usage(self) -> tuple[int, int, int] | None:
        usage = getattr(self.database, "pool_usage", None)
        return usage() if usage is not None else None


def create_app(
    settings: Settings, *, database: Database | None = None, store: MediaStore | None = None
) -> Starlette:
    """The gateway as an ASGI app. ``database`` replaces the pool made from ``DATABASE_URL``
    (tests use it to sabotage lower layers and prove the exit check); ``store`` replaces the
    media store the settings describe."""
    from resolvers import build_schema

    metrics = Metrics()
    tracing = Tracing.from_settings(settings)
    edge = _Deferred(metrics, tracing)
    metrics.watch_pool(edge.pool_usage)
    jwks = JwksCache(
        url=settings.jwks_url,
        file=settings.jwks_file,
        min_refresh_seconds=settings.jwks_min_refresh_seconds,
        max_age_seconds=settings.jwks_max_age_seconds,
    )
    audit = AccessEventWriter(edge.execute, metrics)
    authenticator = Authenticator(TokenVerifier(settings, jwks), edge.fetch)
    exit_check = ExitCheck(edge.fetch, audit, metrics)
    signer = PlaybackSigner(
        settings.signing_keys(), settings.playback_url_ttl_seconds, settings.public_base_url
    )
    graphiql = GraphiQL() if settings.development else None
    endpoint = GraphQLEndpoint(
        schema=build_schema(
            settings,
            RateLimiter(
                settings.rate_limit_requests_per_minute, settings.rate_limit_field_calls_per_minute
            ),
        ),
        settings=settings,
        authenticator=authenticator,
        database=edge,  # type: ignore[arg-type]
        exit_check=exit_check,
        audit=audit,
        playback=signer,
        metrics=metrics,
        documents=TrustedDocuments.load(settings.trusted_documents, FreeForm(settings.free_form)),
        graphiql=graphiql,
        tracing=tracing,
    )
    media = MediaEndpoint(
        authenticator=authenticator,
        fetch=edge.fetch,
        signer=signer,
        exit_check=exit_check,
        audit=audit,
        store=store or media_store(settings),
    )

    hub = EventHub(settings.listen_url)

    def connection_context(request: object, response: object) -> ConnectionContext:
        return ConnectionContext(
            settings=settings,
            playback=signer,
            fetch=edge.fetch,
            exit_check=exit_check,
            audit=audit,
            hub=hub,
            request=request,
            response=response,
        )

    subscriptions = SubscriptionEndpoint(
        endpoint.schema, settings, authenticator, connection_context
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        edge.database = database or await Database.connect(settings)
        with contextlib.suppress(Exception):
            await jwks.refresh()
        if settings.metrics_port is not None:
            app.state.metrics_server, _ = start_http_server(
                settings.metrics_port, registry=metrics.registry
            )
        try:
            yield
        finally:
            # Each step on its own: one failing (a dead database) must not skip the others.
            # Worst case about 5 + 5 + 5 s, after uvicorn's GATEWAY_SHUTDOWN_GRACE_SECONDS.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(hub.close(), 5)
            if database is None:
                with contextlib.suppress(Exception):
                    await edge.database.close()
            edge.database = None
            if settings.metrics_port is not None:
                app.state.metrics_server.shutdown()
                app.state.metrics_server.server_close()
            if tracing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.to_thread(tracing.shutdown), 5)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await edge.fetch("select 1")
        except ServiceUnavailable:
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        if not jwks.loaded:
            with contextlib.suppress(Exception):
                await jwks.refresh()
            if not jwks.loaded:
                return JSONResponse({"status": "jwks unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    middleware = [
        Middleware(RequestObserver, metrics=metrics, tracing=tracing),
        Middleware(SecurityHeaders),
        Middleware(CutOnShutdown),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["POST"],
                allow_headers=["authorization", "content-type", "accept", "x-request-id"],
                expose_headers=["x-request-id"],
                max_age=600,
            )
        )
    routes = [
        Route("/graphql", endpoint.handle, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", subscriptions),
        Route("/media/recordings/{id}", media.handle, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if settings.metrics_port is None:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    if graphiql is not None:
        routes.append(Route(ASSET_ROUTE, graphiql.asset, methods=["GET"]))
    app = Starlette(middleware=middleware, routes=routes, lifespan=lifespan)
    app.state.metrics = metrics
    return app


def media_store(settings: Settings) -> MediaStore:
    if settings.media_store == "s3":
        return S3MediaStore(
            settings.media_s3_bucket or "",
            presign_seconds=settings.media_presign_seconds,
            endpoint_url=settings.media_s3_endpoint_url,
            region=settings.media_s3_region,
        )
    assert settings.media_root is not None
    return LocalMediaStore(settings.media_root)


def create_app_from_environment() -> Starlette:
    """Factory for ``uvicorn --factory`` (``gateway serve`` with several workers)."""
    from gateway.config import load_settings

    return create_app(load_settings())
