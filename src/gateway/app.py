"""``create_app``: the ASGI application, assembled from settings.

The application factory is the one place (with the CLI) that sees every layer: it builds the
schema (``resolvers``), the data edge, the disclosure step and the web endpoints, and hands each
component what it needs as arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route, WebSocketRoute

from gateway.authn.accounts import Authenticator
from gateway.authn.jwks import JwksCache
from gateway.authn.tokens import TokenVerifier
from gateway.authz.disclosure import DisclosureStep
from gateway.authz.playback import PlaybackSessions, PlaybackSigner
from gateway.config import Settings
from gateway.data.account_changes import AccountChanges
from gateway.data.edge import DatabaseEdge
from gateway.data.live import EventHub
from gateway.data.pool import Database
from gateway.errors import ConfigurationError
from gateway.execution.executor import Executor
from gateway.guards.rate_limits import RateLimiter
from gateway.guards.trusted_documents import FreeForm, TrustedDocuments
from gateway.ops.metrics import Metrics
from gateway.ops.metrics_server import serve_metrics
from gateway.ops.tracing import Tracing
from gateway.web.graphiql import ASSET_ROUTE, GraphiQL
from gateway.web.graphql_http import GraphQLEndpoint
from gateway.web.health import Health
from gateway.web.media import MediaEndpoint
from gateway.web.media_store import MediaStore, media_store
from gateway.web.observer import RequestObserver
from gateway.web.security_headers import SecurityHeaders
from gateway.web.shutdown import CutOnShutdown
from gateway.web.webapp import IdentityProvider, SignIn, WebApp
from gateway.web.websocket import ConnectionContext, SubscriptionEndpoint, WebSocketDisclosure
from resolvers import build_schema

__all__ = ["create_app", "create_app_from_environment"]


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    store: MediaStore | None = None,
    identity_provider: IdentityProvider | None = None,
) -> Starlette:
    """The gateway as an ASGI app. ``database`` replaces the pool made from ``DATABASE_URL``
    (tests use it to sabotage lower layers and prove the exit check); ``store`` replaces the
    media store the settings describe; ``identity_provider`` (development only: ``gateway
    dev``'s OpenID Connect provider) is served at its issuer's path, and the web app at /app/
    signs in with it."""
    if identity_provider is not None and not settings.development:
        raise ConfigurationError("an identity provider is served in development mode only")
    metrics = Metrics()
    tracing = Tracing.from_settings(settings)
    edge = DatabaseEdge(metrics, tracing)
    metrics.watch_pool(edge.pool_usage)
    jwks = JwksCache(
        url=settings.jwks_url,
        file=settings.jwks_file,
        min_refresh_seconds=settings.jwks_min_refresh_seconds,
        max_age_seconds=settings.jwks_max_age_seconds,
    )
    account_changes = AccountChanges(settings.listen_url)
    authenticator = Authenticator(
        TokenVerifier(settings, jwks),
        edge.fetch,
        account_changes,
        settings.account_cache_size,
    )
    disclosure = DisclosureStep(edge.fetch, metrics, tracing)
    signer = PlaybackSigner(
        settings.signing_keys(), settings.playback_url_ttl_seconds, settings.public_base_url
    )
    limiter = RateLimiter(
        settings.rate_limit_requests_per_minute, settings.rate_limit_field_calls_per_minute
    )
    schema = build_schema(
        settings,
        limiter,
        extensions=[
            functools.partial(
                WebSocketDisclosure, disclosure=disclosure, development=settings.development
            )
        ],
    )
    documents = TrustedDocuments.load(settings.trusted_documents, FreeForm(settings.free_form))
    executor = Executor(
        schema,
        documents.operations,
        limiter=limiter,
        rules=schema.validation_rules,
        max_tokens=schema.max_tokens,
        names=documents.names,
        metrics=metrics,
    )
    graphiql = GraphiQL() if settings.development else None
    endpoint = GraphQLEndpoint(
        executor=executor,
        settings=settings,
        authenticator=authenticator,
        fetch=edge.fetch,
        disclosure=disclosure,
        playback=signer,
        metrics=metrics,
        documents=documents,
        graphiql=graphiql,
        tracing=tracing,
    )
    media = MediaEndpoint(
        authenticator=authenticator,
        fetch=edge.fetch,
        signer=signer,
        sessions=PlaybackSessions(settings.signing_keys()),
        disclosure=disclosure,
        store=store or media_store(settings),
        range_max_bytes=settings.playback_range_max_bytes,
    )
    hub = EventHub(settings.listen_url)

    def connection_context(request: object, response: object) -> ConnectionContext:
        return ConnectionContext(
            settings=settings,
            playback=signer,
            fetch=edge.fetch,
            hub=hub,
            request=request,
            response=response,
        )

    subscriptions = SubscriptionEndpoint(
        schema, settings, authenticator, connection_context, documents
    )
    health = Health(edge.fetch, jwks, metrics, hub)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        edge.database = database or await Database.connect(settings)
        with contextlib.suppress(Exception):
            await jwks.refresh()
        if settings.account_cache_size:
            account_changes.start()
        if settings.metrics_port is not None:
            app.state.metrics_server = serve_metrics(settings.metrics_port, metrics.registry)
        try:
            yield
        finally:
            # Each step on its own: one failing (a dead database) must not skip the others.
            # Worst case about 5 + 5 + 5 s, after uvicorn's GATEWAY_SHUTDOWN_GRACE_SECONDS.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(hub.close(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(account_changes.close(), 5)
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

    middleware = [
        Middleware(RequestObserver, metrics=metrics, tracing=tracing),
        # A web app on another origin of the same site (GATEWAY_CORS_ORIGINS) plays media in
        # its <video>: a no-cors load, which Cross-Origin-Resource-Policy: same-origin blocks.
        Middleware(
            SecurityHeaders,
            same_site_paths=("/media/recordings/",) if settings.cors_origins else (),
        ),
        Middleware(CutOnShutdown),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["POST"],
                allow_headers=["authorization", "content-type", "accept", "x-request-id"],
                # A separate web app's fetch(..., {credentials: "include"}) of a playback's
                # start, so that its cookie is kept; no cookie ever reaches /graphql.
                allow_credentials=True,
                expose_headers=["x-request-id"],
                max_age=600,
            )
        )
    routes = [
        Route("/graphql", endpoint.handle, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", subscriptions),
        Route("/media/recordings/{id}", media.handle, methods=["GET", "POST"]),
        Route("/healthz", health.live, methods=["GET"]),
        Route("/readyz", health.ready, methods=["GET"]),
    ]
    if settings.metrics_port is None:
        routes.append(Route("/metrics", health.metrics, methods=["GET"]))
    if graphiql is not None:
        routes.append(Route(ASSET_ROUTE, graphiql.asset, methods=["GET"]))
    if settings.development:
        sign_in = None
        if identity_provider is not None:
            sign_in = SignIn(identity_provider.issuer)
            routes.append(Mount(urlsplit(identity_provider.issuer).path, identity_provider))
        webapp = WebApp(sign_in=sign_in)
        routes += [
            Route("/app", webapp.redirect, methods=["GET"]),
            Route("/app/", webapp.file, methods=["GET"]),
            Route("/app/{name}", webapp.file, methods=["GET"]),
        ]
    app = Starlette(middleware=middleware, routes=routes, lifespan=lifespan)
    app.state.metrics = metrics
    return app


def create_app_from_environment() -> Starlette:
    """Factory for ``uvicorn --factory`` (``gateway serve`` with several workers)."""
    from gateway.config import load_settings

    return create_app(load_settings())
