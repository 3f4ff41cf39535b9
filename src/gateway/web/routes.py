"""What the application serves: its routes, and the middleware every request passes through.

The endpoints arrive built (``gateway.app`` makes them); this module only says where each one
answers and in what order the middleware wraps them, from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from gateway.config import Settings
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import Tracing
from gateway.web.graphiql import ASSET_ROUTE, GraphiQL
from gateway.web.graphql_http import GraphQLEndpoint
from gateway.web.health import Health
from gateway.web.media import MediaEndpoint
from gateway.web.observer import RequestObserver
from gateway.web.security_headers import SecurityHeaders
from gateway.web.shutdown import CutOnShutdown
from gateway.web.webapp import IdentityProvider, SignIn, WebApp
from gateway.web.websocket import SubscriptionEndpoint

__all__ = ["Endpoints", "middleware", "routes"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The application's endpoints, one per route or group of routes."""

    graphql: GraphQLEndpoint
    media: MediaEndpoint
    subscriptions: SubscriptionEndpoint
    health: Health
    graphiql: GraphiQL | None  # development only


def routes(
    settings: Settings, endpoints: Endpoints, identity_provider: IdentityProvider | None
) -> list[BaseRoute]:
    """Every route: GraphQL over HTTP and WebSocket, media, the probes, ``/metrics`` unless it
    has a port of its own, and in development GraphiQL's assets, the identity provider (when
    given) and the web app at /app/."""
    served: list[BaseRoute] = [
        Route("/graphql", endpoints.graphql.handle, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", endpoints.subscriptions),
        Route("/media/recordings/{id}", endpoints.media.handle, methods=["GET", "POST"]),
        Route("/healthz", endpoints.health.live, methods=["GET"]),
        Route("/readyz", endpoints.health.ready, methods=["GET"]),
    ]
    if settings.metrics_port is None:
        served.append(Route("/metrics", endpoints.health.metrics, methods=["GET"]))
    if endpoints.graphiql is not None:
        served.append(Route(ASSET_ROUTE, endpoints.graphiql.asset, methods=["GET"]))
    if settings.development:
        sign_in = None
        if identity_provider is not None:
            sign_in = SignIn(identity_provider.issuer)
            served.append(Mount(urlsplit(identity_provider.issuer).path, identity_provider))
        webapp = WebApp(sign_in=sign_in)
        served += [
            Route("/app", webapp.redirect, methods=["GET"]),
            Route("/app/", webapp.file, methods=["GET"]),
            Route("/app/{name}", webapp.file, methods=["GET"]),
        ]
    return served


def middleware(settings: Settings, metrics: Metrics, tracing: Tracing | None) -> list[Middleware]:
    """The middleware, outermost first: observation (request id, log line, metrics, server
    span), security headers, the cut on shutdown, and CORS when other origins are allowed."""
    stack = [
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
        stack.append(
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
    return stack
