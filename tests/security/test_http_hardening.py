"""HTTP: security headers, CORS allow-list, GraphiQL's CSP, request timeout, overload."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import asyncpg
import httpx

from gateway.config import Mode
from tests.security.helpers import gateway_with, patient_token

QUERY = {"query": "{ consultations(first: 1) { edges { node { id } } } }"}


def test_every_response_carries_the_security_headers(env, client):
    for response in (
        client.http.post(
            "/graphql", json=QUERY, headers={"authorization": f"Bearer {patient_token(env)}"}
        ),
        client.http.post("/graphql", json=QUERY),
        client.http.get("/healthz"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    data = client.http.post(
        "/graphql", json=QUERY, headers={"authorization": f"Bearer {patient_token(env)}"}
    )
    assert data.headers["cache-control"] == "no-store"


def test_cors_answers_only_listed_origins(env):
    with gateway_with(env, cors_origins="https://app.example.org") as client:
        allowed = client.http.options(
            "/graphql",
            headers={
                "origin": "https://app.example.org",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )
        evil = client.http.options(
            "/graphql",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.org"
    assert "access-control-allow-origin" not in evil.headers


def test_no_cors_headers_without_a_configured_origin(env, client):
    response = client.http.post(
        "/graphql",
        json=QUERY,
        headers={"origin": "https://evil.example", "authorization": f"Bearer {patient_token(env)}"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_graphiql_is_served_under_a_strict_csp_in_development(env):
    """Only this origin's scripts and styles, requests only to this origin, no framing; no
    inline script at all (so no nonce): a CDN or an injected script cannot run next to a token."""
    with gateway_with(env, mode=Mode.DEVELOPMENT) as client:
        page = client.http.get("/graphql", headers={"accept": "text/html"})
    assert page.headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )
    assert "<script>" not in page.text and "nonce" not in page.text
    assert "unpkg" not in page.text and "https://" not in page.text


@contextlib.contextmanager
def audit_blocked(env):
    """Hold every audit chain's head row, so any request's audit write waits: a real slow
    query (a writer takes a free chain without waiting; with none free, it waits)."""
    ready, release = threading.Event(), threading.Event()

    def hold():
        async def run():
            connection = await asyncpg.connect(env.admin_url)
            try:
                async with connection.transaction():
                    await connection.execute("select * from data.audit_chains for update")
                    ready.set()
                    await asyncio.to_thread(release.wait)
            finally:
                await connection.close()

        asyncio.run(run())

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def test_a_request_past_its_time_budget_gets_503(env):
    with gateway_with(env, request_timeout_seconds=1.0) as client, audit_blocked(env):
        response = client.http.post(
            "/graphql", json=QUERY, headers={"authorization": f"Bearer {patient_token(env)}"}
        )
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["errors"][0]["message"] == "Request timed out"


def test_overload_is_a_graceful_503(env):
    with gateway_with(env, max_concurrent_requests=1, request_timeout_seconds=30) as client:
        headers = {"authorization": f"Bearer {patient_token(env)}"}
        with audit_blocked(env):
            slow = threading.Thread(
                target=lambda: client.http.post("/graphql", json=QUERY, headers=headers)
            )
            slow.start()
            busy = None
            for _ in range(100):
                probe = httpx.post(f"{client.base_url}/graphql", json=QUERY, headers=headers)
                if probe.status_code == 503:
                    busy = probe
                    break
        slow.join(30)
    assert busy is not None
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["errors"][0]["message"] == "Server busy"
