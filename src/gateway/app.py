"""``create_app``: the ASGI application, assembled from settings.

The application factory is the one place (with the CLI) that sees every layer: it makes the
long-lived resources (``web.lifespan``), builds the schema (``resolvers``), the disclosure step
and the endpoints from them, and hands the endpoints to the routes (``web.routes``). Each
component gets what it needs as arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from starlette.applications import Starlette

from gateway.authn.accounts import Authenticator
from gateway.authn.jwks import JwksCache
from gateway.authn.tokens import TokenVerifier
from gateway.authz.disclosure import DisclosureStep
from gateway.authz.playback import PlaybackSessions, PlaybackSigner
from gateway.config import Settings, load_settings
from gateway.data.account_changes import AccountChanges
from gateway.data.edge import DatabaseEdge, Fetch
from gateway.data.live import EventHub
from gateway.data.pool import Database
from gateway.errors import ConfigurationError
from gateway.execution.executor import Executor
from gateway.guards.rate_limits import RateLimiter
from gateway.guards.trusted_documents import FreeForm, TrustedDocuments
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import Tracing
from gateway.web.graphiql import GraphiQL
from gateway.web.graphql_http import GraphQLEndpoint
from gateway.web.health import Health
from gateway.web.lifespan import Resources
from gateway.web.media import MediaEndpoint
from gateway.web.media_store import MediaStore, media_store
from gateway.web.routes import Endpoints, middleware, routes
from gateway.web.webapp import IdentityProvider
from gateway.web.websocket import ConnectionContext, SubscriptionEndpoint, WebSocketDisclosure
from resolvers import build_schema
from resolvers.schema import GatewaySchema

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
    resources = _resources(settings, database)
    endpoints = _endpoints(settings, resources, store)
    app = Starlette(
        middleware=middleware(settings, resources.metrics, resources.tracing),
        routes=routes(settings, endpoints, identity_provider),
        lifespan=resources.lifespan,
    )
    app.state.metrics = resources.metrics
    return app


def create_app_from_environment() -> Starlette:
    """Factory for ``uvicorn --factory`` (``gateway serve`` with several workers)."""
    return create_app(load_settings())


def _resources(settings: Settings, database: Database | None) -> Resources:
    """The long-lived parts, made closed: the lifespan opens them."""
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
    return Resources(
        settings=settings,
        metrics=metrics,
        tracing=tracing,
        edge=edge,
        jwks=jwks,
        account_changes=AccountChanges(settings.listen_url),
        hub=EventHub(settings.listen_url),
        database=database,
    )


def _endpoints(settings: Settings, resources: Resources, store: MediaStore | None) -> Endpoints:
    """Every endpoint, with the authenticator, the disclosure step and the playback signer they
    share."""
    fetch, metrics, tracing = resources.edge.fetch, resources.metrics, resources.tracing
    authenticator = Authenticator(
        TokenVerifier(settings, resources.jwks),
        fetch,
        resources.account_changes,
        settings.account_cache_size,
    )
    disclosure = DisclosureStep(fetch, metrics, tracing)
    signer = PlaybackSigner(
        settings.signing_keys(), settings.playback_url_ttl_seconds, settings.public_base_url
    )
    schema, documents, executor = _execution(settings, disclosure, metrics)
    graphiql = GraphiQL() if settings.development else None
    return Endpoints(
        graphql=GraphQLEndpoint(
            executor=executor,
            settings=settings,
            authenticator=authenticator,
            fetch=fetch,
            disclosure=disclosure,
            playback=signer,
            metrics=metrics,
            documents=documents,
            graphiql=graphiql,
            tracing=tracing,
        ),
        media=MediaEndpoint(
            authenticator=authenticator,
            fetch=fetch,
            signer=signer,
            sessions=PlaybackSessions(settings.signing_keys()),
            disclosure=disclosure,
            store=store or media_store(settings),
            range_max_bytes=settings.playback_range_max_bytes,
        ),
        subscriptions=SubscriptionEndpoint(
            schema,
            settings,
            authenticator,
            _connection_contexts(settings, signer, fetch, resources.hub, tracing),
            documents,
        ),
        health=Health(fetch, resources.jwks, metrics, resources.hub),
        graphiql=graphiql,
    )


def _execution(
    settings: Settings, disclosure: DisclosureStep, metrics: Metrics
) -> tuple[GatewaySchema, TrustedDocuments, Executor]:
    """The schema (with the WebSocket's disclosure step), the trusted documents, and the
    executor that runs them by compiled plan or through the schema."""
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
    return schema, documents, executor


def _connection_contexts(
    settings: Settings,
    signer: PlaybackSigner,
    fetch: Fetch,
    hub: EventHub,
    tracing: Tracing | None,
) -> Callable[[object, object], ConnectionContext]:
    """What makes each WebSocket connection's context; Strawberry hands in its request and
    response."""

    def connection_context(request: object, response: object) -> ConnectionContext:
        return ConnectionContext(
            settings=settings,
            playback=signer,
            fetch=fetch,
            hub=hub,
            tracing=tracing,
            request=request,
            response=response,
        )

    return connection_context
