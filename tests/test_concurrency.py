"""The shared-cache failure mode: hundreds of concurrent requests from many callers, interleaved
on one server, and not one foreign row in any response."""

from __future__ import annotations

import asyncio
import random

import httpx

from gateway.ids import decode_global_id, encode_global_id
from tests.support.json_values import all_strings

LIST = (
    "{ me { subject } consultations(first: 100) { edges { node { id reason "
    "patient { id } recordings { id consultation { id } } } } } }"
)
BY_ID = "query($ids: [ID!]!) { a: node(id: $ids) { id } }"


def _ids_in(body) -> set[str]:
    return {s for s in all_strings(body) if s[:8] in {"Q29uc3Vs", "UGF0aWVu", "UmVjb3Jk"}}


def test_hundreds_of_interleaved_requests_from_many_callers_return_zero_foreign_rows(env, server):
    rng = random.Random(42)
    callers = []
    for subject, patient in env.patients():
        visible = {
            encode_global_id("Consultation", pk)
            for pk in env.truth.consultations_of_patient[patient]
        }
        visible |= {
            encode_global_id("Recording", pk) for pk in env.truth.recordings_of_patient[patient]
        }
        visible.add(encode_global_id("Patient", patient))
        callers.append((subject, env.token(subject), visible))
    for subject, clinician in env.clinicians():
        conducted = env.truth.consultations_of_clinician[clinician]
        visible = {encode_global_id("Consultation", pk) for pk in conducted}
        visible |= {
            encode_global_id("Recording", r)
            for pk in conducted
            for r in env.truth.recordings_of_consultation[pk]
        }
        visible |= {
            encode_global_id("Patient", p) for p in env.truth.patients_of_clinician[clinician]
        }
        callers.append((subject, env.token(subject), visible))
    every_object = sorted(
        encode_global_id(kind, pk)
        for kind, table in (
            ("Consultation", env.truth.consultations_of_patient),
            ("Recording", env.truth.recordings_of_patient),
        )
        for items in table.values()
        for pk in items
    )

    plan = []
    for _ in range(400):
        subject, token, visible = rng.choice(callers)
        if rng.random() < 0.5:
            plan.append((subject, token, visible, {"query": LIST}, None))
        else:
            target = rng.choice(every_object)
            plan.append(
                (
                    subject,
                    token,
                    visible,
                    {
                        "query": "query($id: ID!) { node(id: $id) { id "
                        "... on Consultation { reason recordings { id } } } }",
                        "variables": {"id": target},
                    },
                    target,
                )
            )

    async def run():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as http:
            gate = asyncio.Semaphore(64)

            async def one(item):
                _subject, token, _visible, payload, _target = item
                async with gate:
                    response = await http.post(
                        "/graphql", json=payload, headers={"authorization": f"Bearer {token}"}
                    )
                return item, response

            return await asyncio.gather(*(one(item) for item in plan))

    results = asyncio.run(run())
    assert len(results) == 400
    for (subject, _, visible, _payload, target), response in results:
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        assert _ids_in(body) <= visible, subject
        if target is None:
            assert body["data"]["me"]["subject"] == subject
            listed = {e["node"]["id"] for e in body["data"]["consultations"]["edges"]}
            assert listed == {v for v in visible if decode_global_id(v)[0] == "Consultation"}
        else:
            found = body["data"]["node"]
            assert (found is not None) == (target in visible)
