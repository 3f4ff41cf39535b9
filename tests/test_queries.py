"""Every SQL statement the gateway sends prepares against the real database as the app role."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.data.queries import STATEMENTS


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statement_prepares_as_the_application_role(env, name):
    async def prepare():
        connection = await asyncpg.connect(env.app_url)
        try:
            statement = await connection.prepare(STATEMENTS[name])
            return statement.get_parameters()
        finally:
            await connection.close()

    asyncio.run(prepare())


def test_there_are_statements_to_check():
    assert {
        "CONSULTATIONS_BY_ID",
        "CONSULTATIONS_PAGE",
        "RECORDINGS_BY_CONSULTATION",
        "ACCOUNT_FOR",
        "RECORD_ACCESS_EVENTS_IF_AUTHORIZED",
    } <= set(STATEMENTS)


def test_every_loader_function_keeps_one_plan_per_statement(env):
    """Each statement of a loader function has a predicate that does not depend on the role
    (the pages have one statement per role, migration 0011), so one generic plan per
    connection serves every call: planning these RLS-laden statements cost more than running
    them."""

    async def modes():
        connection = await asyncpg.connect(env.admin_url)
        try:
            rows = await connection.fetch(
                "select p.proname, c from pg_proc p, unnest(p.proconfig) c "
                "where p.pronamespace = 'api'::regnamespace and c like 'plan_cache_mode=%'"
            )
        finally:
            await connection.close()
        return {r["proname"]: r["c"].split("=", 1)[1] for r in rows}

    assert asyncio.run(modes()) == {
        "consultations_page": "force_generic_plan",
        "access_events_page": "force_generic_plan",
        "consultations_by_id": "force_generic_plan",
        "consultations_by_patient": "force_generic_plan",
        "recordings_by_consultation": "force_generic_plan",
        "recordings_by_id": "force_generic_plan",
        "patients_by_id": "force_generic_plan",
    }
