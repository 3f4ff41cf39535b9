"""A graphql-transport-ws client for the leak tests: one connection, any number of
subscriptions, every message kept (so a test can search all of them for foreign IDs), each wait
bounded."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import asyncpg
import websockets

WAIT = 10.0


class Subscriber:
    """``executor`` as in ``tests.support.executors``: ``compiled`` subscribes with a trusted
    document's hash (as production requires), ``interpreted`` with its text."""

    def __init__(self, socket: Any, executor: str = "interpreted") -> None:
        self.socket = socket
        self.executor = executor
        self.messages: list[dict[str, Any]] = []  # every message received, in order
        self._pending: dict[str | None, list[dict[str, Any]]] = {}

    @classmethod
    async def connect(cls, http_url: str, token: str, executor: str = "interpreted") -> Subscriber:
        url = http_url.replace("http://", "ws://") + "/graphql"
        socket = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
        subscriber = cls(socket, executor)
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = await subscriber.next(None)
        assert ack["type"] == "connection_ack", ack
        return subscriber

    async def subscribe(self, operation_id: str, query: str, consultation: UUID | str) -> None:
        from gateway.ids import encode_global_id

        variables = {
            "id": consultation
            if isinstance(consultation, str)
            else encode_global_id("Consultation", consultation)
        }
        payload: dict[str, Any] = {"variables": variables}
        if self.executor == "compiled":
            from tests.support.executors import _DECLARED, digest

            assert digest(query) in _DECLARED, (
                f"declare with tests.support.executors.trusted(): {query}"
            )
            payload["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": digest(query)}}
        else:
            payload["query"] = query
        await self.socket.send(
            json.dumps({"id": operation_id, "type": "subscribe", "payload": payload})
        )

    async def next(self, operation_id: str | None, wait: float = WAIT) -> dict[str, Any]:
        """The next message of ``operation_id`` (None: of the connection), keeping the others."""
        queue = self._pending.setdefault(operation_id, [])
        while not queue:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), wait))
            if message.get("type") == "ping":
                await self.socket.send(json.dumps({"type": "pong"}))
                continue
            self.messages.append(message)
            self._pending.setdefault(message.get("id"), []).append(message)
        return queue.pop(0)

    async def event(self, operation_id: str) -> dict[str, Any]:
        """The next event's data; fails on anything but a clean ``next``."""
        message = await self.next(operation_id)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        return message["payload"]["data"]["consultationEvents"]

    def of(self, operation_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("id") == operation_id]

    async def close(self) -> None:
        await self.socket.close()


async def touch(env: Any, consultation: UUID) -> None:
    """An update of the consultation that changes nothing but notifies `updated`."""
    connection = await asyncpg.connect(env.admin_url)
    try:
        await connection.execute(
            "update data.consultations set status = status where id = $1", consultation
        )
    finally:
        await connection.close()


def metric(http: Any, name: str) -> float:
    import re

    match = re.search(rf"^{name} ([0-9.]+)$", http.get("/metrics").text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
