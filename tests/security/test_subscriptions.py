"""Subscriptions over WebSocket (graphql-transport-ws): authenticated in connection_init, own
consultations only, closed when the token expires, origins and counts limited."""

from __future__ import annotations

import asyncio
import json
import socket as sockets

import asyncpg
import pytest
import websockets

from gateway.ids import encode_global_id
from tests.security.helpers import gateway_with

SUBSCRIBE = (
    "subscription($id: ID!) { consultationEvents(consultationId: $id) { kind "
    "consultation { id status reason } } }"
)


def _ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/graphql"


async def _open(url: str, token: str | None, origin: str | None = None):
    socket = await websockets.connect(
        url, subprotocols=["graphql-transport-ws"], origin=origin, open_timeout=10
    )
    payload = {"authorization": f"Bearer {token}"} if token else {}
    await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
    return socket


async def _subscribe(socket, operation_id: str, consultation) -> None:
    """Start a consultationEvents subscription on ``socket`` for ``consultation`` (its key)."""
    variables = {"id": encode_global_id("Consultation", consultation)}
    await socket.send(
        json.dumps(
            {
                "id": operation_id,
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": variables},
            }
        )
    )


async def _receive(socket, wait: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), wait))


async def _set_status(env, consultation, status: str) -> None:
    connection = await asyncpg.connect(env.admin_url)
    try:
        await connection.execute(
            "update data.consultations set status = $2 where id = $1", consultation, status
        )
    finally:
        await connection.close()


def _own_and_foreign(env):
    (subject, patient), (_, other) = env.patients()[2], env.patients()[3]
    own = sorted(env.truth.consultations_of_patient[patient])[0]
    foreign = sorted(env.truth.consultations_of_patient[other])[0]
    return subject, own, foreign


def test_a_patient_follows_their_own_consultation_live(env, server):
    subject, own, _ = _own_and_foreign(env)

    async def scenario():
        socket = await _open(_ws_url(server.url), env.token(subject))
        assert (await _receive(socket))["type"] == "connection_ack"
        await _subscribe(socket, "1", own)
        first = await _receive(socket)
        await _set_status(env, own, "CANCELLED")
        second = await _receive(socket)
        await socket.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert first["type"] == "next"
    assert first["payload"]["data"]["consultationEvents"]["kind"] == "current"
    assert second["payload"]["data"]["consultationEvents"]["kind"] == "updated"
    assert second["payload"]["data"]["consultationEvents"]["consultation"]["status"] == "CANCELLED"


def test_subscribing_to_another_patients_consultation_is_not_found(env, server):
    subject, _, foreign = _own_and_foreign(env)

    async def scenario():
        socket = await _open(_ws_url(server.url), env.token(subject))
        await _receive(socket)
        await _subscribe(socket, "1", foreign)
        messages = [await _receive(socket)]
        while messages[-1]["type"] not in ("complete", "error"):
            messages.append(await _receive(socket))
        await socket.close()
        return messages

    messages = asyncio.run(scenario())
    payloads = json.dumps(messages)
    assert "Consultation not found" in payloads
    assert '"reason"' not in payloads and "status" not in payloads


def test_a_connection_without_a_valid_token_is_closed(env, server):
    async def scenario(token):
        socket = await _open(_ws_url(server.url), token)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _receive(socket)
        return closed.value.rcvd.code

    assert asyncio.run(scenario(None)) == 4403
    assert asyncio.run(scenario("not-a-token")) == 4403


def test_queries_and_mutations_are_refused_over_websocket(env, server):
    subject, _, _ = _own_and_foreign(env)

    async def scenario():
        socket = await _open(_ws_url(server.url), env.token(subject))
        await _receive(socket)
        await socket.send(
            json.dumps(
                {
                    "id": "q",
                    "type": "subscribe",
                    "payload": {"query": "{ consultations { edges { node { id reason } } } }"},
                }
            )
        )
        reply = await _receive(socket)
        await socket.close()
        return reply

    reply = asyncio.run(scenario())
    assert reply["type"] == "error"
    assert "reason" not in json.dumps(reply.get("payload"))


def test_the_connection_closes_when_the_token_expires(env, server):
    subject, own, _ = _own_and_foreign(env)

    async def scenario():
        socket = await _open(_ws_url(server.url), env.identity.token(subject, ttl=2))
        await _receive(socket)
        await _subscribe(socket, "1", own)
        await _receive(socket)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await _receive(socket, wait=15)
        return closed.value.rcvd.code

    assert asyncio.run(scenario()) == 4401


def test_a_foreign_origin_is_refused(env, server):
    async def scenario():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                _ws_url(server.url),
                subprotocols=["graphql-transport-ws"],
                origin="https://evil.example",
            )
        return refused.value.response.status_code

    assert asyncio.run(scenario()) == 403


def test_subscriptions_per_connection_are_capped(env):
    subject, own, _ = _own_and_foreign(env)
    with gateway_with(env, max_subscriptions_per_connection=2) as client:

        async def scenario():
            socket = await _open(_ws_url(client.base_url), env.token(subject))
            await _receive(socket)
            for number in range(3):
                await _subscribe(socket, str(number), own)
            replies = [await _receive(socket) for _ in range(3)]
            await socket.close()
            return replies

        replies = asyncio.run(scenario())
    errors = [r for r in replies if r["type"] == "error"]
    assert errors and errors[0]["id"] == "2"
    assert errors[0]["payload"][0]["message"] == "Subscription limit reached"


def test_live_events_listen_on_their_own_database_url(env):
    """LISTEN cannot work through PgBouncer in transaction mode, so the event connection has its
    own URL (GATEWAY_LISTEN_DATABASE_URL). Pointed at a port where nothing listens, the
    subscription fails with UNAVAILABLE although queries (DATABASE_URL) work: the hub uses it."""
    subject, own, _ = _own_and_foreign(env)
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    nowhere = f"postgresql://gateway_app@127.0.0.1:{closed_port}/gateway"
    with gateway_with(env, listen_database_url=nowhere) as client:

        async def scenario():
            socket = await _open(_ws_url(client.base_url), env.token(subject))
            await _receive(socket)
            await _subscribe(socket, "1", own)
            reply = await _receive(socket)
            await socket.close()
            return reply

        reply = asyncio.run(scenario())
        assert client.post("{ me { role } }", env.token(subject)).status_code == 200
    assert reply["type"] in {"next", "error"}
    errors = reply["payload"]["errors"] if reply["type"] == "next" else reply["payload"]
    assert [e["extensions"]["code"] for e in errors] == ["UNAVAILABLE"]
