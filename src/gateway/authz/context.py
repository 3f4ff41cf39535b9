"""The one resolver context: what resolvers and the field check may use, over HTTP and WebSocket.

An HTTP request's context (``gateway.execution.context.RequestContext``) and a subscription's
(``gateway.web.websocket.SubscriptionContext``) both satisfy ``Context``, and the type checker
holds them to it where each is handed to an executor. Resolvers say what they read with ``Info``;
a subscription's resolver, which also follows a stream of events, with ``LiveInfo``. It lives in
the policy's layer, below the schema, the executors and the transports, so all of them name it.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

import strawberry

from gateway.authz.playback import PlaybackSigner
from gateway.config import Settings
from gateway.data.changes import AccessChanges
from gateway.data.live import EventScope
from gateway.data.loaders import Loaders
from gateway.identity import Principal
from gateway.ledger import Ledger

__all__ = ["Context", "Info", "LiveContext", "LiveInfo"]


class Context(Protocol):
    """One authenticated caller's view of the data, for one request or one subscription event:
    loaders and access changes that write into ``ledger``, never shared with another request."""

    @property
    def principal(self) -> Principal: ...

    @property
    def request_id(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def loaders(self) -> Loaders: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def changes(self) -> AccessChanges: ...

    @property
    def playback(self) -> PlaybackSigner: ...


class LiveContext(Context, EventScope, Protocol):
    """A subscription's context: a ``Context`` whose loaders and ledger are renewed for each
    event (``next_event``), with the transport's event hub and its end of the stream."""


Info: TypeAlias = strawberry.Info[Context, None]
LiveInfo: TypeAlias = strawberry.Info[LiveContext, None]
