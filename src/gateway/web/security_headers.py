"""Headers every HTTP response carries, whatever route produced it."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders"]


class SecurityHeaders:
    """Adds each header a response does not set itself. ``same_site_paths`` are path prefixes
    whose responses another origin of the same site may embed (``Cross-Origin-Resource-Policy:
    same-site`` in place of ``same-origin``): the playback media of a web app served from its
    own origin (app.example.org beside api.example.org), whose ``<video>`` loads them."""

    HEADERS: tuple[tuple[bytes, bytes], ...] = (
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-resource-policy", b"same-origin"),
    )
    SAME_SITE = (b"cross-origin-resource-policy", b"same-site")

    def __init__(self, app: ASGIApp, same_site_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.same_site_paths = same_site_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self.HEADERS
        if scope["path"].startswith(self.same_site_paths):
            headers = tuple(
                self.SAME_SITE if n == self.SAME_SITE[0] else (n, v) for n, v in headers
            )

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in headers if n not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
