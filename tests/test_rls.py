"""Layer 3: the application role meets FORCE ROW LEVEL SECURITY; an unfiltered query returns
nothing foreign, and the scope never outlives its statement on a pooled connection."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.data.pool import Database
from gateway.errors import ConfigurationError

PATIENT_DATA = [
    "data.patients",
    "data.consultations",
    "data.recordings",
    "data.consents",
    "data.break_glass_grants",
    "data.access_events",
]


def _run(coroutine):
    return asyncio.run(coroutine)


async def _as_app(env, work):
    connection = await asyncpg.connect(env.app_url)
    try:
        return await work(connection)
    finally:
        await connection.close()


def test_the_application_role_is_nosuperuser_nobypassrls_and_owns_nothing(env):
    async def work(connection):
        return await connection.fetchrow(
            """select r.rolsuper, r.rolbypassrls,
                      (select count(*) from pg_class c where c.relowner = r.oid) as owned
               from pg_roles r where r.rolname = current_user"""
        )

    row = _run(_as_app(env, work))
    assert (row["rolsuper"], row["rolbypassrls"], row["owned"]) == (False, False, 0)


def test_every_patient_data_table_forces_row_level_security(env):
    async def work(connection):
        return await connection.fetch(
            """select c.oid::regclass::text as name, c.relrowsecurity, c.relforcerowsecurity
               from pg_class c where c.oid = any($1::regclass[])""",
            PATIENT_DATA,
        )

    rows = _run(_as_app(env, work))
    assert sorted(r["name"] for r in rows) == sorted(PATIENT_DATA)
    assert all(r["relrowsecurity"] and r["relforcerowsecurity"] for r in rows)


def test_an_unfiltered_query_without_a_scope_returns_no_rows_at_all(env):
    async def work(connection):
        return [await connection.fetchval(f"select count(*) from {t}") for t in PATIENT_DATA]

    assert _run(_as_app(env, work)) == [0] * len(PATIENT_DATA)


def test_an_unfiltered_query_scoped_to_a_patient_returns_only_that_patients_rows(env):
    async def work(connection, patient):
        async with connection.transaction():
            await connection.execute("select api.enter_scope('patient', $1, null)", patient)
            consultations = await connection.fetch("select id, patient_id from data.consultations")
            recordings = await connection.fetch("select id, patient_id from data.recordings")
            patients = await connection.fetch("select id from data.patients")
        return consultations, recordings, patients

    for _, patient in env.patients():
        consultations, recordings, patients = _run(_as_app(env, lambda c, p=patient: work(c, p)))
        assert {r["id"] for r in consultations} == env.truth.consultations_of_patient[patient]
        assert {r["id"] for r in recordings} == env.truth.recordings_of_patient[patient]
        assert [r["id"] for r in patients] == [patient]


def test_an_unfiltered_query_scoped_to_a_clinician_returns_conducted_and_break_glass_rows(env):
    async def work(connection, clinician):
        async with connection.transaction():
            await connection.execute("select api.enter_scope('clinician', $1, null)", clinician)
            consultations = await connection.fetch("select id from data.consultations")
            patients = await connection.fetch("select id from data.patients")
        return consultations, patients

    async def emergencies(clinician):
        """Patients under the clinician's active break-glass grants (other tests open some)."""
        admin = await asyncpg.connect(env.admin_url)
        try:
            rows = await admin.fetch(
                "select patient_id from data.break_glass_grants where clinician_id = $1 "
                "and revoked_at is null and now() < expires_at",
                clinician,
            )
        finally:
            await admin.close()
        return {row["patient_id"] for row in rows}

    for _, clinician in env.clinicians():
        opened = _run(emergencies(clinician))
        consultations, patients = _run(_as_app(env, lambda c, x=clinician: work(c, x)))
        expected = set(env.truth.consultations_of_clinician[clinician])
        for patient in opened:
            expected |= env.truth.consultations_of_patient[patient]
        assert {r["id"] for r in consultations} == expected
        assert {r["id"] for r in patients} == {env.truth.owner_of[pk] for pk in expected}


def test_the_scope_does_not_outlive_its_statement_on_the_same_connection(env):
    _, patient = env.patients()[0]
    ids = list(env.truth.consultations_of_patient[patient])

    async def work(connection):
        loaded = await connection.fetch(
            "select * from api.consultations_by_id('patient', $1, null, $2::uuid[])", patient, ids
        )
        after = await connection.fetchval("select count(*) from data.consultations")
        setting = await connection.fetchval("select current_setting('gateway.actor_id', true)")
        return len(loaded), after, setting

    loaded, after, setting = _run(_as_app(env, work))
    assert loaded == len(ids) > 0
    assert after == 0
    assert setting in (None, "")


def test_the_application_role_cannot_write_clinical_tables(env):
    async def work(connection):
        await connection.execute("delete from data.consultations")

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        _run(_as_app(env, work))


def test_the_gateway_refuses_to_serve_through_a_superuser(env):
    settings = env.settings(database_url=env.admin_url)
    with pytest.raises(ConfigurationError, match="is a superuser"):
        _run(Database.connect(settings))


def test_role_scopes_hold_in_the_database_alone(env):
    """Support: every consultation, no recording; auditor and unknown roles: no clinical row."""

    async def count(connection, role, table):
        async with connection.transaction():
            await connection.execute("select api.enter_scope($1, null, null)", role)
            return await connection.fetchval(f"select count(*) from {table}")

    async def work(connection):
        return {
            (role, table): await count(connection, role, table)
            for role in ("support", "auditor", "nosuchrole")
            for table in ("data.consultations", "data.recordings", "data.patients")
        }

    counts = _run(_as_app(env, work))
    total = sum(len(v) for v in env.truth.consultations_of_patient.values())
    assert counts[("support", "data.consultations")] >= total
    assert counts[("support", "data.recordings")] == 0
    assert all(
        counts[(role, t)] == 0
        for role in ("auditor", "nosuchrole")
        for t in ("data.consultations", "data.recordings", "data.patients")
    )


def test_a_partner_without_the_token_scope_sees_no_row_even_with_consent(env):
    async def consenting_partner():
        admin = await asyncpg.connect(env.admin_url)
        try:
            return await admin.fetchval(
                "select partner_id from data.consents where revoked_at is null "
                "and now() < expires_at and 'patient/Consultation.rs' = any(scopes) limit 1"
            )
        finally:
            await admin.close()

    partner = _run(consenting_partner())
    assert partner is not None

    async def work(connection):
        async with connection.transaction():
            await connection.execute("select api.enter_scope('partner', $1, null)", partner)
            without = await connection.fetchval("select count(*) from data.consultations")
        async with connection.transaction():
            await connection.execute(
                "select api.enter_scope('partner', $1, '{patient/Consultation.rs}')", partner
            )
            scoped = await connection.fetchval("select count(*) from data.consultations")
        return without, scoped

    without, scoped = _run(_as_app(env, work))
    assert without == 0
    assert scoped > 0


def test_a_pooled_connection_hands_no_scope_to_the_next_request(env):
    """Released connections are not reset (one round trip less per statement): nothing the
    gateway sets outlives its statement, so the next statement on the same pooled connection,
    another request's, starts with no scope and no audit-chain state."""
    _, patient = env.patients()[0]

    async def work():
        database = await Database.connect(env.settings(db_pool_min_size=1, db_pool_max_size=1))
        try:
            loaded = await database.fetch(
                "select * from api.consultations_by_id('patient', $1, null, $2::uuid[])",
                patient,
                list(env.truth.consultations_of_patient[patient]),
            )
            after = await database.fetch(
                "select current_setting('gateway.role', true) as role, "
                "current_setting('gateway.actor_id', true) as actor, "
                "current_setting('gateway.audit_chain', true) as chain, "
                "pg_backend_pid() as backend"
            )
            again = await database.fetch("select pg_backend_pid() as backend")
            return len(loaded), after[0], again[0]["backend"]
        finally:
            await database.close()

    loaded, after, backend = _run(work())
    assert loaded > 0
    assert after["backend"] == backend  # the same pooled connection
    assert (after["role"] or "", after["actor"] or "", after["chain"] or "") == ("", "", "")
