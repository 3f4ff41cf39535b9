"""Two replicas under concurrent support and patient pages: every request is answered, every
answer was audited, and every audit chain verifies with no gap.

Before the chains (migration 0012) every audit write locked one head row, so every request
queued behind the slowest writer, and past the statement timeout got 503. Now a writer takes
any chain no other writer holds: with one chain held for the whole run, nothing waits.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.support.database import as_admin
from tests.support.gateway_process import gateway_serve, run_gateway
from tests.support.production import production_identity

SUPPORT_PAGE = "{ consultations(first: 100) { edges { node { id scheduledAt status } } } }"
PATIENT_PAGE = "{ consultations(first: 20) { edges { node { id reason summary } } } }"


ISSUER = "https://idp.example.org/replicas"


@pytest.fixture(scope="module")
def identity(env, tmp_path_factory):
    """An identity provider serve accepts, with the session's accounts under its issuer."""
    made = production_identity(tmp_path_factory.mktemp("replicas"), ISSUER)
    as_admin(
        env,
        lambda c: c.execute(
            "insert into data.accounts (issuer, subject, role, patient_id, clinician_id, "
            "partner_id, developer) select $1, subject, role, patient_id, clinician_id, "
            "partner_id, developer from data.accounts where issuer = $2 "
            "on conflict do nothing",
            ISSUER,
            env.identity.issuer,
        ),
    )
    return made


def test_two_replicas_answer_every_concurrent_page_and_keep_every_chain_whole(env, identity):
    run = uuid.uuid4().hex[:8]
    support = identity.token("support-0001")
    patients = [identity.token(subject) for subject, _ in env.patients()]
    production = {"GATEWAY_DB_STATEMENT_TIMEOUT_MS": "5000"}  # the default: no waiting it out
    with (
        gateway_serve(env, identity, **production) as (_, first),
        gateway_serve(env, identity, **production) as (_, second),
    ):

        async def load() -> list[tuple[str, int]]:
            async with httpx.AsyncClient(timeout=60) as client:
                semaphore = asyncio.Semaphore(16)

                async def one(number: int) -> tuple[str, int]:
                    url = (first, second)[number % 2]
                    supporting = number % 3 == 0
                    request_id = f"replicas-{run}-{number}"
                    async with semaphore:
                        response = await client.post(
                            f"{url}/graphql",
                            json={"query": SUPPORT_PAGE if supporting else PATIENT_PAGE},
                            headers={
                                "authorization": "Bearer "
                                + (support if supporting else patients[number % len(patients)]),
                                "x-request-id": request_id,
                            },
                        )
                    return request_id, response.status_code

                return await asyncio.gather(*(one(n) for n in range(120)))

        async def load_while_a_writer_is_stuck() -> list[tuple[str, int]]:
            # A writer holding a chain for the whole run (a slow disk, a stuck transaction):
            # with one chain head every request would queue behind it, and time out.
            stuck = await asyncpg.connect(env.admin_url)
            try:
                async with stuck.transaction():
                    await stuck.execute("select * from data.audit_chains where id = 1 for update")
                    return await load()
            finally:
                await stuck.close()

        answered = asyncio.run(load_while_a_writer_is_stuck())
    assert sorted({status for _, status in answered}) == [200]
    audited = as_admin(
        env,
        lambda c: c.fetch(
            "select distinct request_id from data.access_events where request_id like $1",
            f"replicas-{run}-%",
        ),
    )
    assert {r["request_id"] for r in audited} == {request_id for request_id, _ in answered}
    chains = as_admin(
        env,
        lambda c: c.fetchval(
            "select count(distinct chain_id) from data.access_events where request_id like $1",
            f"replicas-{run}-%",
        ),
    )
    assert chains > 1
    verified = run_gateway("audit", "verify", "--full", "--database-url", env.admin_url)
    assert verified.returncode == 0, verified.stderr
