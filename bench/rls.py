"""Database time of the consultation pages under row-level security, before and after
migrations 0010 (the policies read the caller's settings once per statement) and 0011 (one
statement per role):

    python -m bench.rls                  # 1,000 patients x 50 consultations, as bench.run
    python -m bench.rls --patients 200

It builds a database at 0009, times each page as ``gateway_app`` (execution time from
``EXPLAIN (ANALYZE)``, median of 50 after 10 warm-ups), applies the later migrations to the
same data and times them again. The floor is the same page read by the table owner through the
``consultations_by_time`` / ``consultations_by_patient`` index without any policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

import asyncpg

from bench.run import WORK

PAGES = {
    "Q4 support, newest 500": (
        "select * from api.consultations_page('support', null, '{}', 501, null, null)",
        "support",
    ),
    "Q1 patient, newest 50": (
        "select * from api.consultations_page('patient', $1, '{}', 51, null, null)",
        "patient",
    ),
}
FLOOR = {
    "Q4 support, newest 500": (
        "select * from data.consultations order by scheduled_at desc, id desc limit 501"
    ),
    "Q1 patient, newest 50": (
        "select * from data.consultations where patient_id = $1 "
        "order by scheduled_at desc, id desc limit 51"
    ),
}


async def _execution_ms(connection: asyncpg.Connection, sql: str, args: tuple, scope) -> float:
    async with connection.transaction():
        if scope is not None:
            await connection.execute("select api.enter_scope($1, $2, '{}')", *scope)
        plan = await connection.fetchval(f"explain (analyze, format json) {sql}", *args)
    return json.loads(plan)[0]["Execution Time"]


async def _time(connection, sql, args, scope, runs: int = 60) -> float:
    times = [await _execution_ms(connection, sql, args, scope) for _ in range(runs)]
    return statistics.median(times[10:])


async def _measure(admin_url: str, app_url: str, patient: str, actor: str) -> dict[str, float]:
    app = await asyncpg.connect(app_url)
    try:
        found = {}
        for label, (sql, role) in PAGES.items():
            args = (patient,) if "$1" in sql else ()
            found[label] = await _time(app, sql, args, (role, actor if role != "support" else None))
        return found
    finally:
        await app.close()


async def _floor(admin_url: str, patient: str) -> dict[str, float]:
    admin = await asyncpg.connect(admin_url)
    try:
        return {
            label: await _time(admin, sql, (patient,) if "$1" in sql else (), None)
            for label, sql in FLOOR.items()
        }
    finally:
        await admin.close()


async def run(server_url: str, patients: int, clinicians: int, consultations: int) -> None:
    from gateway.data.migrate import apply_migrations
    from gateway.dev.embedded import with_credentials
    from gateway.dev.identity import DevIdentity
    from gateway.dev.seed import SeedPlan, seed_database
    from tests.support.released import migrate_as_released

    name = f"bench_rls_{patients}_{consultations}"
    server = await asyncpg.connect(server_url)
    try:
        await server.execute(f'drop database if exists "{name}"')
        await server.execute(f'create database "{name}"')
    finally:
        await server.close()
    admin_url = with_credentials(server_url, "postgres", "", database=name)
    admin = await asyncpg.connect(admin_url)
    try:
        # The policies as they were before 0010, from the migrations as released.
        await migrate_as_released(admin, before="0010")
        await admin.execute("alter role gateway_app login password 'bench-only-password'")
        identity = DevIdentity.load_or_create(WORK / "identity")
        print(f"seeding {patients} patients x {consultations} consultations ...", flush=True)
        await seed_database(
            admin, SeedPlan(patients, clinicians, consultations, 7), identity.issuer
        )
        await admin.execute("vacuum analyze")
        patient = str(
            await admin.fetchval(
                "select patient_id from data.accounts where role = 'patient' "
                "order by subject limit 1"
            )
        )
        count = await admin.fetchval("select count(*) from data.consultations")
        app_url = with_credentials(server_url, "gateway_app", "bench-only-password", database=name)
        before = await _measure(admin_url, app_url, patient, patient)
        await apply_migrations(admin)
        await admin.execute("vacuum analyze")
        after = await _measure(admin_url, app_url, patient, patient)
        floor = await _floor(admin_url, patient)
    finally:
        await admin.close()

    print(f"\n{count} consultations; execution time in ms (median of 50, EXPLAIN ANALYZE)")
    print(f"{'page':<26}{'0009':>10}{'0012':>10}{'owner, no RLS':>16}{'before/after':>14}")
    for label in PAGES:
        print(
            f"{label:<26}{before[label]:>10.2f}{after[label]:>10.2f}{floor[label]:>16.2f}"
            f"{before[label] / after[label]:>13.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--clinicians", type=int, default=200)
    parser.add_argument("--consultations", type=int, default=50)
    args = parser.parse_args()
    from gateway.dev.embedded import EmbeddedPostgres

    WORK.mkdir(parents=True, exist_ok=True)
    cluster = EmbeddedPostgres(WORK, fast=True)
    server_url = cluster.start()
    try:
        asyncio.run(run(server_url, args.patients, args.clinicians, args.consultations))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
