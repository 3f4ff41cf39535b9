"""``/graphql`` over WebSocket: ``graphql-transport-ws`` only, subscriptions only.

The token travels in ``connection_init`` (``{"authorization": "Bearer ..."}``) and is verified
like HTTP's; a connection without a valid one is closed (4403). The connection is closed (4401)
when the token expires. Browsers' Origin must be in the allow-list (cross-site WebSocket
hijacking), subscriptions per connection are capped, and errors are masked as over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from graphql import GraphQLError
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.graphql import OperationType

from gateway.auth import Authenticator
from gateway.changes import AccessChanges
from gateway.config import Settings
from gateway.errors import AuthenticationError, GatewayError, ServiceUnavailable
from gateway.events import ConnectionContext
from gateway.http import document_error, format_error

__all__ = ["SubscriptionEndpoint", "WebSocketSafety"]


class WebSocketSafety(SchemaExtension):
    """Over WebSocket: subscriptions only, and every result's errors masked as over HTTP."""

    development = False

    def _over_websocket(self) -> bool:
        return isinstance(self.execution_context.context, ConnectionContext)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self._over_websocket() and context.operation_type is not OperationType.SUBSCRIPTION:
            raise InvalidOperationTypeError(context.operation_type)
        yield

    def on_stream_result(self, result: Any) -> Iterator[None]:
        if self._over_websocket() and getattr(result, "errors", None):
            errors = result.errors
            if getattr(result, "data", None) is None and all(
                e.path is None and not isinstance(e.original_error, GatewayError) for e in errors
            ):
                safe = [document_error(errors)]
            else:
                safe = [format_error(e, development=self.development) for e in errors]
            result.errors = [
                GraphQLError(item["message"], path=item.get("path"), extensions=item["extensions"])
                for item in safe
            ]
        yield


class SubscriptionEndpoint(GraphQL):
    def __init__(
        self, schema: Any, settings: Settings, authenticator: Authenticator, make_context: Any
    ) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            allowed_origins=settings.websocket_origins or settings.cors_origins,
        )
        self._settings = settings
        self._authenticator = authenticator
        self._make_context = make_context

    async def get_context(self, request: Any, response: Any) -> ConnectionContext:
        return self._make_context(request, response)

    async def on_ws_connect(self, context: ConnectionContext) -> Any:
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        authorization = params.get("authorization") or params.get("Authorization")
        if not authorization and isinstance(params.get("token"), str):
            authorization = f"Bearer {params['token']}"
        try:
            principal = await self._authenticator.authenticate(authorization)
        except (AuthenticationError, ServiceUnavailable):
            raise ConnectionRejectionError({"reason": "unauthenticated"}) from None
        context.principal = principal
        context.changes = AccessChanges(
            context.fetch, principal, context.ledger, context.request_id, self._settings
        )
        context.fresh()
        websocket = context.request
        delay = max(0.0, principal.expires_at - time.time())
        loop = asyncio.get_running_loop()
        context.watchdog = loop.call_later(
            delay, lambda: loop.create_task(websocket.close(code=4401, reason="Token expired"))
        )
        return None


def build_websocket_extensions(development: bool) -> type[WebSocketSafety]:
    return type("GatewayWebSocketSafety", (WebSocketSafety,), {"development": development})
