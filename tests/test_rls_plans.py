"""Row-level security reads the caller's scope once per statement, never once per row.

The policies read the settings through scalar sub-selects (migration 0010), which PostgreSQL
runs as InitPlans: once per statement, their values then compared like parameters. A policy
that called the settings' functions directly would read them for every row a scan visits
(support's newest 500 consultations were a 29 ms sequential scan). EXPLAIN of a query on every
patient-data table, under every role's scope, must show the settings read in InitPlans only.
"""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.support.database import as_admin

TABLES = [
    "consultations",
    "recordings",
    "patients",
    "consents",
    "break_glass_grants",
    "access_events",
]
ROLES = ["patient", "clinician", "support", "partner", "auditor"]
SCOPES = ["patient/Consultation.rs", "patient/Recording.rs", "patient/Patient.rs"]
SETTING_READS = ("current_setting(", "scope_role(", "scope_actor(", "scope_scopes(")


def _per_row_reads(plan: dict, inside_initplan: bool = False) -> list[str]:
    """Expressions of plan nodes outside InitPlans that read a scope setting."""
    found = []
    initplan = inside_initplan or plan.get("Parent Relationship") == "InitPlan"
    if not initplan:
        for key in ("Filter", "Join Filter", "Index Cond", "Recheck Cond", "One-Time Filter"):
            expression = plan.get(key, "")
            if any(read in expression for read in SETTING_READS):
                found.append(f"{plan['Node Type']} {key}: {expression}")
    for child in plan.get("Plans", ()):
        found += _per_row_reads(child, initplan)
    return found


def _explain(env, role: str, sql: str) -> dict:
    actor_sql = {
        "patient": "select patient_id from data.accounts where role = 'patient' limit 1",
        "clinician": "select clinician_id from data.accounts where role = 'clinician' limit 1",
        "partner": "select partner_id from data.accounts where role = 'partner' limit 1",
    }

    async def work(connection: asyncpg.Connection) -> dict:
        actor = await connection.fetchval(actor_sql[role]) if role in actor_sql else None
        await connection.execute("set role gateway_app")
        try:
            async with connection.transaction():
                await connection.execute(
                    "select api.enter_scope($1, $2, $3::text[])", role, actor, SCOPES
                )
                text = await connection.fetchval(f"explain (verbose, format json) {sql}")
        finally:
            await connection.execute("reset role")
        return json.loads(text)[0]["Plan"]

    return as_admin(env, work)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("table", TABLES)
def test_a_scan_under_the_policies_reads_the_scope_once_per_statement(env, table, role):
    plan = _explain(env, role, f"select * from data.{table}")
    assert _per_row_reads(plan) == []


@pytest.mark.parametrize("role", ROLES)
def test_a_consultation_page_under_the_policies_reads_the_scope_once(env, role):
    plan = _explain(
        env, role, "select * from data.consultations order by scheduled_at desc, id desc limit 500"
    )
    assert _per_row_reads(plan) == []


def test_the_check_finds_a_policy_that_reads_the_scope_per_row(env):
    """The walk over the plan is able to fail: a policy written the old way is caught."""

    async def work(connection: asyncpg.Connection) -> list[str]:
        async with connection.transaction():
            await connection.execute("drop policy consent_rows on data.consents")
            await connection.execute(
                "create policy consent_rows on data.consents for select to gateway_app "
                "using (api.scope_role() = 'patient' and patient_id = api.scope_actor())"
            )
            await connection.execute("set local role gateway_app")
            await connection.execute(
                "select api.enter_scope('patient', gen_random_uuid(), '{}'::text[])"
            )
            text = await connection.fetchval(
                "explain (verbose, format json) select * from data.consents"
            )
            found = _per_row_reads(json.loads(text)[0]["Plan"])
            raise _Rollback(found)

    try:
        as_admin(env, work)
    except _Rollback as rollback:
        found = rollback.found
    assert found and "current_setting(" in found[0]


class _Rollback(Exception):
    def __init__(self, found: list[str]) -> None:
        super().__init__("rolled back")
        self.found = found
