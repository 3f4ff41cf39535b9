"""How long migration 0021 takes to move an existing audit trail into its months:

    python -m bench.audit_migration                  # 500,000 events over 12 months
    python -m bench.audit_migration --events 100000 --months 6

On durable PostgreSQL (fsync, synchronous_commit, full_page_writes on) in a cluster of its own
(bench/.work/audit_migration): a database of the last release (its migrations, as released:
tests/data/migrations-as-released.tar.gz), seeded, with real events written by the release's own
function and then ``--events`` copies of them spread over ``--months`` past months
(``tests.support.audit_history``: valid chains), all in the release's one unpartitioned table.
Then ``gateway migrate``'s own ``apply_migrations`` runs 0021, 0022 and the definitions, timed; the
trail is compared before and after (every column of every event) and verified. While 0021 runs
it holds the old table: every audit write, and so every disclosure, waits for it. The figure is
that wait, per million events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime

import asyncpg

from bench.run import DURABILITY, WORK

HERE = WORK / "audit_migration"


def _month(offset: int) -> datetime:
    now = datetime.now(UTC)
    total = now.year * 12 + now.month - 1 + offset
    return datetime(total // 12, total % 12 + 1, 1, tzinfo=UTC)


async def _run(server_url: str, events: int, months: int) -> dict[str, object]:
    from gateway.audit.chain import verify_chain
    from gateway.data.migrate import apply_migrations
    from gateway.data.queries import RECORD_ACCESS_EVENTS
    from gateway.dev.embedded import _ROLES, OWNER, with_credentials
    from gateway.dev.seed import SeedPlan, seed_database
    from tests.support.audit_history import append_history
    from tests.support.released import migrate_as_released

    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(_ROLES)  # the roles the prod overlay declares
        await admin.execute("drop database if exists bench_migration with (force)")
        await admin.execute(f"create database bench_migration owner {OWNER}")
        durability = {
            name: await admin.fetchval(f"show {name}")
            for name in ("fsync", "synchronous_commit", "full_page_writes")
        }
    finally:
        await admin.close()
    url = server_url.rsplit("/", 1)[0] + "/bench_migration"
    superuser = await asyncpg.connect(url)
    owner = await asyncpg.connect(with_credentials(url, OWNER, "x", database="bench_migration"))
    try:
        await migrate_as_released(owner)
        await seed_database(superuser, SeedPlan(patients=200, clinicians=20), "urn:bench")
        patients = [row[0] for row in await superuser.fetch("select id from data.patients")]
        real = [
            {
                "request_id": f"real-{n}",
                "kind": "disclosure",
                "issuer": "urn:bench",
                "subject": f"patient-{n}",
                "role": "patient",
                "actor_id": str(patients[n]),
                "patient_id": str(patients[n]),
                "objects": [{"type": "Consultation", "id": str(n), "fields": ["id", "reason"]}],
            }
            for n in range(20)
        ]
        await superuser.execute(RECORD_ACCESS_EVENTS, json.dumps(real), [])
        templates = await superuser.fetch(
            "select patient_id, request_id, kind, issuer, subject, role, actor_id, client_id, "
            "break_glass_reason, objects::text as objects, detail::text as detail, "
            "object_groups::text as object_groups, object_sets, object_counts, object_ids "
            "from data.access_events"
        )
        spread = [_month(-offset) for offset in range(months, 0, -1)]
        await append_history(superuser, templates, spread, events // months, patients)
        size = await superuser.fetchval("select pg_total_relation_size('data.access_events')")
        before = await superuser.fetch("select * from data.access_events order by id")
        started = time.perf_counter()
        applied = await apply_migrations(owner)
        seconds = time.perf_counter() - started
        after = await superuser.fetch("select * from data.access_events order by id")
        report = await verify_chain(superuser)
        same = [tuple(row) for row in before] == [tuple(row) for row in after]
    finally:
        await owner.close()
        await superuser.close()
    return {
        "events": len(before),
        "months": months,
        "table_bytes_before": size,
        "applied": applied,
        "seconds": round(seconds, 2),
        "seconds_per_million": round(seconds / len(before) * 1e6, 1),
        "every_column_equal": same,
        "verify": report.message,
        "durability": durability,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--months", type=int, default=12)
    args = parser.parse_args()
    from gateway.dev.embedded import EmbeddedPostgres

    HERE.mkdir(parents=True, exist_ok=True)
    cluster = EmbeddedPostgres(HERE, fast=False)
    server_url = cluster.start()
    try:
        result = asyncio.run(_run(server_url, args.events, args.months))
    finally:
        cluster.stop()
    assert result["every_column_equal"], "the trail changed in the migration"
    assert all(value == "on" for value in result["durability"].values()), DURABILITY
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
