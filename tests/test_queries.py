"""Every SQL statement the gateway sends prepares against the real database as the app role."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.queries import STATEMENTS


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
