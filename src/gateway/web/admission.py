"""How many requests a replica executes at once, and for how long each may run.

Past ``max_concurrent_requests`` a request gets 503 + Retry-After at once instead of queueing;
one still running after ``request_timeout_seconds`` is cancelled and gets 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.errors import ServiceUnavailable

__all__ = ["Admission"]

T = TypeVar("T")


class Admission:
    def __init__(self, max_in_flight: int, timeout_seconds: float) -> None:
        self._max = max_in_flight
        self._timeout = timeout_seconds
        self._in_flight = 0

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work()``'s result; ServiceUnavailable when busy or when it runs out of time."""
        if self._in_flight >= self._max:
            raise ServiceUnavailable("Server busy", retry_after=1)
        self._in_flight += 1
        try:
            async with asyncio.timeout(self._timeout):
                return await work()
        except TimeoutError:
            raise ServiceUnavailable("Request timed out") from None
        finally:
            self._in_flight -= 1
