"""The JWKS cache over real HTTP: keys fetched once, rotation picked up on an unknown kid, and no
fetch storm however many tokens name an unknown kid."""

from __future__ import annotations

import asyncio
import json

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.authn.tokens import JwksCache
from tests.support.server import serving


class Provider:
    def __init__(self, keys):
        self.keys = keys
        self.hits = 0

    def app(self):
        async def jwks(request):
            self.hits += 1
            return JSONResponse({"keys": self.keys})

        return Starlette(routes=[Route("/jwks.json", jwks)])


def test_unknown_kids_refetch_at_most_once_per_interval_and_rotation_is_picked_up(env):
    document = json.loads(env.identity.jwks_file.read_text())
    old_key = document["keys"][0]
    new_key = {**old_key, "kid": "rotated-key"}
    provider = Provider([old_key])
    now = [1000.0]
    with serving(provider.app()) as server:
        cache = JwksCache(
            url=f"{server.url}/jwks.json", min_refresh_seconds=30, clock=lambda: now[0]
        )

        async def scenario():
            assert await cache.key(old_key["kid"], "ES256") is not None
            assert provider.hits == 1
            misses = await asyncio.gather(*(cache.key(f"unknown-{i}", "ES256") for i in range(50)))
            assert misses == [None] * 50
            assert provider.hits == 1
            provider.keys = [old_key, new_key]
            now[0] += 31
            found = await asyncio.gather(*(cache.key("rotated-key", "ES256") for _ in range(20)))
            assert all(key is not None for key in found)
            assert provider.hits == 2
            assert await cache.key(old_key["kid"], "RS256") is None

        asyncio.run(scenario())
