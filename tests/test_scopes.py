"""The SMART scope names are written once in Python (gateway.policy.scopes); the database's check
constraint on consents, from a migration that is never edited, must list the same ones."""

from __future__ import annotations

import re

from gateway.policy import scopes
from tests.support.database import as_admin


def test_the_consent_constraint_admits_exactly_the_scopes_of_the_policy(env):
    async def read(connection):
        return await connection.fetchval(
            "select pg_get_constraintdef(oid) from pg_constraint "
            "where conname = 'consents_scopes_known'"
        )

    definition = as_admin(env, read)
    assert sorted(re.findall(r"'(patient/[A-Za-z]+\.rs)'", definition)) == sorted(scopes.ALL)
