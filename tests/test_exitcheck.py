"""Layer 4: a foreign object forced past layers 1 to 3 is withheld, counted and recorded.

The sabotage: a database edge whose loader statements forget every WHERE clause and run as a
superuser (no RLS), the way a shared cache or a careless new query would. The field check refuses
the fields of those rows (tests/test_field_check_alone.py), but the rows were loaded: the exit
check withholds the whole response all the same, counts it and records an alert.
"""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest

from gateway.ids import encode_global_id
from tests.sabotage import sabotaged_gateway, unfiltered


@pytest.fixture(scope="module")
def leaky(env):
    with sabotaged_gateway(env) as (client, database):
        database.broken.update(unfiltered())
        yield client


def _trips(client) -> float:
    text = client.http.get("/metrics").text
    match = re.search(r"^gateway_exit_check_trips_total ([0-9.]+)$", text, re.MULTILINE)
    return float(match.group(1))


def _alerts(env, subject):
    async def read():
        connection = await asyncpg.connect(env.admin_url)
        try:
            return await connection.fetch(
                "select kind, subject, patient_id, detail from data.access_events "
                "where kind = 'alert' and subject = $1",
                subject,
            )
        finally:
            await connection.close()

    return asyncio.run(read())


def test_a_leaking_list_is_withheld_counted_and_recorded(env, leaky):
    subject, patient = env.patients()[2]
    before = _trips(leaky)
    response = leaky.post(
        "{ consultations(first: 100) { edges { node { id reason recordings { id } } } } }",
        env.token(subject),
    )
    assert response.status_code == 200
    assert response.json() == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }
    assert _trips(leaky) == before + 1
    alerts = _alerts(env, subject)
    foreign_owners = {a["patient_id"] for a in alerts}
    assert foreign_owners and patient not in foreign_owners
    assert all(a["detail"] == '{"layer": 4, "reason": "exit-check"}' for a in alerts)


def test_a_foreign_object_is_withheld_even_when_only_its_typename_is_asked(env, leaky):
    (subject, _), (_, victim) = env.patients()[3], env.patients()[4]
    foreign = sorted(env.truth.consultations_of_patient[victim])[0]
    before = _trips(leaky)
    body = leaky.execute(
        "query($id: ID!) { consultation(id: $id) { __typename } }",
        env.token(subject),
        {"id": encode_global_id("Consultation", foreign)},
    )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "WITHHELD"
    assert _trips(leaky) == before + 1


def test_a_clinician_is_checked_against_the_patients_they_may_see(env, leaky):
    (subject, clinician), (_, other) = env.clinicians()[0], env.clinicians()[1]
    strangers = set(env.truth.consultations_of_patient) - env.truth.patients_of_clinician[clinician]
    foreign = next(
        pk
        for pk in sorted(env.truth.consultations_of_clinician[other])
        if env.truth.owner_of[pk] in strangers
    )
    body = leaky.execute(
        "query($id: ID!) { consultation(id: $id) { id summary } }",
        env.token(subject),
        {"id": encode_global_id("Consultation", foreign)},
    )
    assert body == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }


def test_own_data_through_the_same_broken_edge_is_not_withheld(env, leaky):
    subject, patient = env.patients()[5]
    own = sorted(env.truth.consultations_of_patient[patient])[0]
    before = _trips(leaky)
    body = leaky.execute(
        "query($id: ID!) { consultation(id: $id) { id reason } }",
        env.token(subject),
        {"id": encode_global_id("Consultation", own)},
    )
    assert body["data"]["consultation"]["id"] == encode_global_id("Consultation", own)
    assert _trips(leaky) == before
