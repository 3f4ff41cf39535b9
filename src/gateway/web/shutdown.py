"""What a request cut by shutdown gets.

After SIGTERM uvicorn lets requests in flight finish for ``GATEWAY_SHUTDOWN_GRACE_SECONDS``, then
cancels those still running. Instead of the server's bare 500, such a request gets 503 with
Retry-After and ``connection: close``, so its client retries, on another replica. The
cancellation itself still propagates.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ServiceUnavailable
from gateway.web.responses import unavailable_response

__all__ = ["CutOnShutdown"]


class CutOnShutdown:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except asyncio.CancelledError:
            if not started:
                response = unavailable_response(
                    ServiceUnavailable("Server shutting down", retry_after=1)
                )
                response.headers["connection"] = "close"
                with contextlib.suppress(Exception):
                    await response(scope, receive, send)
            raise
