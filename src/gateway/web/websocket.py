"""``/graphql`` over WebSocket: ``graphql-transport-ws`` only, subscriptions only.

The token travels in ``connection_init`` (``{"authorization": "Bearer ..."}``) and is verified
like HTTP's; a connection without a valid one is closed (4403), and it is closed (4401) when the
token expires. Browsers' Origin must be in the allow-list (cross-site WebSocket hijacking) and
subscriptions per connection are capped. A ``subscribe`` names its document as a POST does: a
trusted document by ``extensions.persistedQuery.sha256Hash``, or free-form text only where the
caller may send free-form documents (``GATEWAY_FREE_FORM_DOCUMENTS``); anything else is answered
with an ``error`` message (``TRUSTED_DOCUMENTS_ONLY``, ``PERSISTED_QUERY_NOT_FOUND``, ...) and
never parsed. Subscriptions run through graphql-core (no plan is compiled for them).

Each subscription gets a context of its own (``SubscriptionContext``, a ``LiveContext``), never
shared with another subscription of the connection, and each event a request's context of its own
(fresh loaders, access changes and ledger, traced as over HTTP). Once an event's
whole selection has resolved, ``WebSocketDisclosure`` passes it through the disclosure step before
the transport sends it: an event the step refuses is replaced by its error and ends the stream.
Errors are masked as over HTTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLFormattedError
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ErrorMessage
from strawberry.types.graphql import OperationType

from gateway.authn.accounts import Authenticator
from gateway.authz.context import LiveContext
from gateway.authz.disclosure import DisclosureStep
from gateway.authz.playback import PlaybackSigner
from gateway.config import Settings
from gateway.data.changes import AccessChanges
from gateway.data.edge import Fetch
from gateway.data.live import EventHub
from gateway.data.loaders import Loaders
from gateway.errors import (
    AuthenticationError,
    BadRequest,
    GatewayError,
    ResponseWithheld,
    ServiceUnavailable,
)
from gateway.execution.context import RequestContext
from gateway.guards.trusted_documents import TrustedDocuments
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.web.error_format import document_error, format_error
from gateway.web.params import params_of

if TYPE_CHECKING:
    from gateway.ops.tracing import Tracing

__all__ = [
    "ConnectionContext",
    "SubscriptionContext",
    "SubscriptionEndpoint",
    "WebSocketDisclosure",
]


@dataclass(eq=False)
class ConnectionContext:
    """One WebSocket connection: its principal, once ``connection_init`` verified it. Strawberry
    fills ``request``, ``response`` and ``connection_params``."""

    settings: Settings
    playback: PlaybackSigner
    fetch: Fetch
    hub: EventHub
    tracing: Tracing | None = None
    request: Any = None
    response: Any = None
    connection_params: Any = None
    principal: Principal | None = None
    watchdog: asyncio.TimerHandle | None = None

    def subscription(self) -> SubscriptionContext:
        """A context for one subscription of the verified caller (graphql-transport-ws refuses a
        ``subscribe`` before ``connection_init`` succeeded)."""
        if self.principal is None:
            raise AuthenticationError("Not authenticated")
        return SubscriptionContext(
            principal=self.principal,
            settings=self.settings,
            playback=self.playback,
            fetch=self.fetch,
            hub=self.hub,
            tracing=self.tracing,
        )


@dataclass(eq=False)
class SubscriptionContext:
    """One subscription of a connection: what its resolvers see (a ``LiveContext``). Each event
    is resolved in a ``RequestContext`` of its own, opened by ``next_event``: ``loaders``,
    ``changes`` and ``ledger`` belong to the event being resolved and are replaced for the next
    (nothing cached between events). ``closed`` ends the stream after an event the disclosure
    step refused."""

    principal: Principal
    settings: Settings
    playback: PlaybackSigner
    fetch: Fetch
    hub: EventHub
    tracing: Tracing | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    closed: bool = False
    event: RequestContext = field(init=False)

    def __post_init__(self) -> None:
        self.next_event()

    def next_event(self) -> Loaders:
        """Fresh loaders writing into a fresh ledger, for the next event."""
        self.event = RequestContext.open(
            self.principal,
            self.request_id,
            fetch=self.fetch,
            settings=self.settings,
            playback=self.playback,
            tracing=self.tracing,
        )
        return self.event.loaders

    @property
    def loaders(self) -> Loaders:
        return self.event.loaders

    @property
    def ledger(self) -> Ledger:
        return self.event.ledger

    @property
    def changes(self) -> AccessChanges:
        return self.event.changes


class WebSocketDisclosure(SchemaExtension):
    """Over WebSocket: subscriptions only, a context per subscription, every event through the
    disclosure step once resolved, and every result's errors masked as over HTTP."""

    def __init__(
        self,
        *,
        disclosure: DisclosureStep,
        development: bool,
        execution_context: Any = None,
    ) -> None:
        super().__init__(execution_context=execution_context)
        self._disclosure = disclosure
        self._development = development

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        if isinstance(context, ConnectionContext):
            subscription: LiveContext = context.subscription()
            self.execution_context.context = subscription
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if (
            isinstance(context.context, SubscriptionContext)
            and context.operation_type is not OperationType.SUBSCRIPTION
        ):
            raise InvalidOperationTypeError(context.operation_type)
        yield

    async def on_stream_result(self, result: Any) -> AsyncIterator[None]:
        context = self.execution_context.context
        if isinstance(context, SubscriptionContext):
            await self._clear(context, result)
        yield

    async def _clear(self, context: SubscriptionContext, result: Any) -> None:
        if getattr(result, "data", None) is not None:
            try:
                await self._disclosure.clear(
                    context.principal,
                    context.ledger,
                    context.request_id,
                    detail={"subscription": "consultationEvents"},
                )
            except (ResponseWithheld, ServiceUnavailable) as exc:
                context.closed = True
                result.data = None
                result.errors = [GraphQLError(exc.message, original_error=exc)]
        if getattr(result, "errors", None):
            result.errors = self._masked(result)

    def _masked(self, result: Any) -> list[GraphQLError]:
        errors = result.errors
        if getattr(result, "data", None) is None and all(
            e.path is None and not isinstance(e.original_error, GatewayError) for e in errors
        ):
            safe = [document_error(errors)]
        else:
            safe = [format_error(e, development=self._development) for e in errors]
        return [
            GraphQLError(item["message"], path=item.get("path"), extensions=item["extensions"])
            for item in safe
        ]


class _TrustedDocumentsHandler(BaseGraphQLTransportWSHandler[ConnectionContext, None]):
    """graphql-transport-ws, with each ``subscribe`` payload's document resolved as over HTTP
    before Strawberry sees it."""

    view: SubscriptionEndpoint

    async def handle_subscribe(self, message: Any) -> None:
        context = self.context
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and isinstance(context, ConnectionContext)
            and context.principal is not None
        ):
            try:
                query = self.view.trusted_query(message.get("payload"), context.principal)
            except BadRequest as exc:
                error: GraphQLFormattedError = {
                    "message": exc.message,
                    "extensions": {"code": exc.code},
                }
                await self.send_message(
                    ErrorMessage(id=message["id"], type="error", payload=[error])
                )
                return
            message = {**message, "payload": {**message["payload"], "query": query}}
        await super().handle_subscribe(message)


class SubscriptionEndpoint(GraphQL[ConnectionContext, None]):
    graphql_transport_ws_handler_class = _TrustedDocumentsHandler

    def __init__(
        self,
        schema: Any,
        settings: Settings,
        authenticator: Authenticator,
        make_context: Callable[[Any, Any], ConnectionContext],
        documents: TrustedDocuments,
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
        self._authenticator = authenticator
        self._make_context = make_context
        self._documents = documents
        self._max_query_chars = settings.max_query_chars

    def trusted_query(self, payload: Any, principal: Principal) -> str:
        """The document a ``subscribe`` payload names, as ``TrustedDocuments`` resolves an HTTP
        request's; BadRequest when it may not run."""
        params = params_of(payload, self._max_query_chars)
        return self._documents.resolve(params.query, params.sha256, principal)

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
        websocket = context.request
        delay = max(0.0, principal.expires_at - time.time())
        loop = asyncio.get_running_loop()
        context.watchdog = loop.call_later(
            delay, lambda: loop.create_task(websocket.close(code=4401, reason="Token expired"))
        )
        return None
