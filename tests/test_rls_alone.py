"""Layer 3 on its own: as the application role, an unfiltered ``select`` of each patient-data table
under a caller's scope returns exactly the rows row-level security must show that caller, for
every kind of caller (see tests/support/visibility_oracle.py, computed from the rows read as a
superuser): patients, clinicians conducting or under active, revoked and expired break-glass,
partners under every kind of consent with every token scope set, support, an auditor and an unknown
role.
"""

from __future__ import annotations

import pytest

from tests.support.database import connected
from tests.support.visibility_oracle import Snapshot, callers, make_world

TABLES = (
    "consultations",
    "recordings",
    "patients",
    "consents",
    "consent_requests",
    "access_events",
    "break_glass_grants",
)


@pytest.fixture(scope="module")
def world(env, client):
    (target_subject, target), (other_subject, other) = env.patients()[3], env.patients()[4]
    made = connected(env.admin_url, lambda c: make_world(c, target, other))
    for subject in (target_subject, other_subject):  # access events of two patients
        client.execute("{ consultations { edges { node { id } } } }", env.token(subject))
    return made


@pytest.mark.parametrize("table", TABLES)
def test_an_unfiltered_select_shows_each_caller_exactly_the_rows_row_security_allows(
    env, world, table
):
    snapshot = connected(env.admin_url, Snapshot.read)
    everyone = callers(env, world)

    async def visible(connection):
        seen = []
        for caller in everyone:
            async with connection.transaction():
                await connection.execute(
                    "select api.enter_scope($1, $2, $3)",
                    caller.role,
                    caller.actor,
                    list(caller.scopes),
                )
                rows = await connection.fetch(f"select id from data.{table}")
            seen.append({row["id"] for row in rows})
        return seen

    for caller, got in zip(everyone, connected(env.app_url, visible), strict=True):
        assert got == snapshot.rls(caller)[table], str(caller)


def test_a_patient_cannot_revoke_another_patients_consent_in_the_database(env, world):
    async def consent(connection):
        return await connection.fetchval(
            "select id from data.consents where partner_id = $1", world.partners["all"]
        )

    consent_id = connected(env.admin_url, consent)

    async def revoke(connection):
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("select api.enter_scope('patient', $1, null)", world.other)
            return await connection.execute(
                "update data.consents set revoked_at = now() where id = $1", consent_id
            )
        finally:
            await transaction.rollback()

    assert connected(env.app_url, revoke) == "UPDATE 0"


def test_an_unfiltered_update_of_consents_reaches_only_the_callers_own(env, world):
    """No WHERE clause: only the update policy's own USING stands between the caller and every
    other patient's consents (a WHERE clause would bring in the select policy too)."""

    async def own(connection):
        return await connection.fetchval(
            "select count(*) from data.consents where patient_id = $1", world.other
        )

    expected = connected(env.admin_url, own)
    assert expected > 0

    async def revoke_everything(connection):
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("select api.enter_scope('patient', $1, null)", world.other)
            return await connection.execute("update data.consents set revoked_at = now()")
        finally:
            await transaction.rollback()

    assert connected(env.app_url, revoke_everything) == f"UPDATE {expected}"
