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
        "AUTHORIZED_PATIENTS",
    } <= set(STATEMENTS)


def test_page_functions_are_planned_per_call_and_by_id_functions_once(env):
    """A page's predicate depends on the role (`case p_role ...`): a generic plan, which
    PL/pgSQL may switch to after five calls on a connection, scans every consultation. The
    by-ID functions are indexable by any plan and keep one (planning cost more than running)."""

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
        "consultations_page": "force_custom_plan",
        "access_events_page": "force_custom_plan",
        "consultations_by_id": "force_generic_plan",
        "consultations_by_patient": "force_generic_plan",
        "recordings_by_consultation": "force_generic_plan",
        "recordings_by_id": "force_generic_plan",
        "patients_by_id": "force_generic_plan",
    }
