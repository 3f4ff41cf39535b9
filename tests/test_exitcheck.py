"""Layer 4: a foreign object forced past layers 1 to 3 is withheld, counted and recorded.

The sabotage: a database edge whose loader statements forget every WHERE clause and run as a
superuser (no RLS), the way a shared cache or a careless new query would. The field check refuses
the fields of those rows (tests/test_field_check_alone.py), but the rows were loaded: the exit
check withholds the whole response all the same, counts it and records an alert.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import asyncpg
import pytest

from gateway import create_app
from gateway.data import queries
from gateway.data.pool import Database
from gateway.ids import encode_global_id
from tests.support import serving

_GRANT = "null::text[] as consent_scopes, null::text as break_glass_reason"
# statement -> (unfiltered SQL run as a superuser, indexes of the arguments it keeps)
UNFILTERED = {
    queries.CONSULTATIONS_PAGE: (
        f"select *, {_GRANT} from data.consultations order by scheduled_at desc, id desc limit $1",
        [3],
    ),
    queries.CONSULTATIONS_BY_ID: (
        f"select *, {_GRANT} from data.consultations where id = any($1::uuid[])",
        [3],
    ),
    queries.RECORDINGS_BY_CONSULTATION: (
        f"select *, {_GRANT} from data.recordings where consultation_id = any($1::uuid[])",
        [3],
    ),
}


class LeakyDatabase:
    """The real application-role edge, except that loader statements lose their filters."""

    def __init__(self, env) -> None:
        self._env = env
        self._real: Database | None = None
        self._admin: asyncpg.Pool | None = None

    async def _open(self) -> None:
        if self._real is None:
            self._real = await Database.connect(self._env.settings())
            self._admin = await asyncpg.create_pool(self._env.admin_url, min_size=1, max_size=2)

    async def fetch(self, statement, *args):
        await self._open()
        if statement in UNFILTERED:
            sql, keep = UNFILTERED[statement]
            return await self._admin.fetch(sql, *[args[i] for i in keep])
        return await self._real.fetch(statement, *args)

    async def execute(self, statement, *args):
        await self._open()
        return await self._real.execute(statement, *args)


@pytest.fixture(scope="module")
def leaky(env):
    with serving(create_app(env.settings(), database=LeakyDatabase(env))) as server:
        from tests.support import GraphQLClient

        yield GraphQLClient(server.url)


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


def _alert_rows(env, subject, request_id):
    async def read():
        connection = await asyncpg.connect(env.admin_url)
        try:
            return await connection.fetch(
                "select kind, role, patient_id, objects, detail from data.access_events "
                "where subject = $1 and request_id = $2",
                subject,
                request_id,
            )
        finally:
            await connection.close()

    return asyncio.run(read())


def test_each_alert_names_one_foreign_patient_with_exactly_their_objects(env, leaky):
    subject, patient = env.patients()[6]
    response = leaky.post(
        "{ consultations(first: 100) { edges { node { id } } } }", env.token(subject)
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "WITHHELD"
    rows = _alert_rows(env, subject, response.headers["x-request-id"])
    assert {row["kind"] for row in rows} == {"alert"}
    assert {row["role"] for row in rows} == {"patient"}
    by_owner = {row["patient_id"]: json.loads(row["objects"]) for row in rows}
    foreign = {owner for owner, items in env.truth.consultations_of_patient.items() if items}
    assert set(by_owner) == foreign - {patient}
    for owner, objects in by_owner.items():
        assert sorted(objects, key=lambda o: o["id"]) == sorted(
            (
                {"type": "Consultation", "id": str(pk), "fields": []}
                for pk in env.truth.consultations_of_patient[owner]
            ),
            key=lambda o: o["id"],
        )


def test_a_trip_is_logged_critical_with_the_request_the_caller_and_the_foreign_count(
    env, leaky, caplog
):
    subject, patient = env.patients()[6]
    with caplog.at_level(logging.INFO, logger="gateway.exitcheck"):
        response = leaky.post(
            "{ consultations(first: 100) { edges { node { id } } } }", env.token(subject)
        )
    foreign = {owner for owner, items in env.truth.consultations_of_patient.items() if items}
    [record] = [r for r in caplog.records if r.name == "gateway.exitcheck"]
    assert (record.levelno, record.getMessage()) == (
        logging.CRITICAL,
        "exit check tripped: response withheld",
    )
    assert (record.request_id, record.subject, record.role, record.foreign_patients) == (
        response.headers["x-request-id"],
        subject,
        "patient",
        len(foreign - {patient}),
    )


def test_when_the_alert_cannot_be_written_the_response_is_still_withheld_and_that_is_logged(
    env, leaky, caplog
):
    subject, _ = env.patients()[7]

    async def grant(statement):
        connection = await asyncpg.connect(env.admin_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(grant("revoke insert on data.access_events from gateway_app"))
    try:
        with caplog.at_level(logging.INFO, logger="gateway.exitcheck"):
            response = leaky.post(
                "{ consultations(first: 100) { edges { node { id } } } }", env.token(subject)
            )
    finally:
        asyncio.run(grant("grant insert on data.access_events to gateway_app"))
    assert response.json() == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }
    failures = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name == "gateway.exitcheck"
    ]
    assert [r.getMessage() for r in failures] == ["could not record exit-check alert"]
    assert failures[0].request_id == response.headers["x-request-id"]
    assert failures[0].exc_info is not None
