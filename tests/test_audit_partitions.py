"""The audit trail in monthly partitions (migration 0021): an existing trail moved into its months
without losing or reordering an event, the months made ahead, and every guarantee holding
across them (append-only, fail closed, row-level security, no way around the parent)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from gateway.audit.chain import verify_chain
from gateway.data.migrate import apply_migrations
from gateway.data.queries import RECORD_ACCESS_EVENTS
from gateway.dev.embedded import OWNER, with_credentials
from gateway.dev.seed import SeedPlan, seed_database
from tests.support.audit_history import append_history
from tests.support.released import migrate_as_released

_ALL = "select * from data.access_events order by id"


def _month(offset: int) -> datetime:
    now = datetime.now(UTC)
    total = now.year * 12 + now.month - 1 + offset
    return datetime(total // 12, total % 12 + 1, 1, tzinfo=UTC)


def _on_scratch(env, work) -> Any:
    """``work(superuser, owner)`` connections to a new empty database the owner role owns."""
    name = f"gateway_parts_{uuid.uuid4().hex[:8]}"

    async def run() -> Any:
        admin = await asyncpg.connect(env.admin_url)
        try:
            await admin.execute(f'create database "{name}" owner {OWNER}')
            admin_url = env.admin_url.rsplit("/", 1)[0] + f"/{name}"
            superuser = await asyncpg.connect(admin_url)
            owner = await asyncpg.connect(with_credentials(admin_url, OWNER, "x", database=name))
            try:
                return await work(superuser, owner)
            finally:
                await owner.close()
                await superuser.close()
        finally:
            await admin.execute(f'drop database if exists "{name}" with (force)')
            await admin.close()

    return asyncio.run(run())


async def _released_trail_of_months(superuser, owner) -> list[uuid.UUID]:
    """The last release's database, seeded, with real events of today and three earlier
    months of copies in its one unpartitioned table; returns the patients."""
    await migrate_as_released(owner)
    await seed_database(superuser, SeedPlan(patients=4, clinicians=2), "urn:test")
    patients = [row[0] for row in await superuser.fetch("select id from data.patients")]
    events = [
        {
            "request_id": f"today-{n}",
            "kind": "disclosure",
            "issuer": "urn:test",
            "subject": "s",
            "role": "patient",
            "actor_id": str(patients[n % 4]),
            "patient_id": str(patients[n % 4]),
            "objects": [{"type": "Consultation", "id": str(n), "fields": ["id"]}],
        }
        for n in range(8)
    ]
    await superuser.execute(RECORD_ACCESS_EVENTS, json.dumps(events), [])
    templates = await superuser.fetch(
        "select patient_id, request_id, kind, issuer, subject, role, actor_id, client_id, "
        "break_glass_reason, objects::text as objects, detail::text as detail, "
        "object_groups::text as object_groups, object_sets, object_counts, object_ids "
        "from data.access_events"
    )
    await append_history(superuser, templates, [_month(-3), _month(-2), _month(-1)], 40, patients)
    return patients


def test_an_unpartitioned_trail_is_moved_into_its_months_row_for_row(env):
    """Every event of the release's table, every column (ids, seq, chain positions, hashes,
    times), is in the partitioned trail after the migrate, in the same order, each in its
    month's partition; the chains verify; the next event continues the ids and the chains."""

    async def work(superuser, owner) -> dict[str, Any]:
        await _released_trail_of_months(superuser, owner)
        before = [dict(row) for row in await superuser.fetch(_ALL)]
        applied = await apply_migrations(owner)
        after = [dict(row) for row in await superuser.fetch(_ALL)]
        by_month = await superuser.fetch(
            "select c.relname as month, count(e.*) as events "
            "from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "left join data.access_events e on e.tableoid = c.oid "
            "where i.inhparent = 'data.access_events'::regclass group by c.relname"
        )
        report = await verify_chain(superuser)
        await superuser.execute(
            RECORD_ACCESS_EVENTS,
            json.dumps(
                [{"request_id": "after", "kind": "denial", "issuer": "i", "subject": "s",
                  "role": "support"}]
            ),
            [],
        )  # fmt: skip
        newest = await superuser.fetchrow(
            "select id, chain_seq, chain_id from data.access_events where request_id = 'after'"
        )
        return {
            "before": before,
            "after": after,
            "applied": applied,
            "by_month": {row["month"]: row["events"] for row in by_month},
            "report": report,
            "newest": newest,
            "again": await verify_chain(superuser),
        }

    result = _on_scratch(env, work)
    assert "0021_audit_partitions" in result["applied"]
    before, after = result["before"], result["after"]
    assert len(before) == 8 + 3 * 40
    assert after == before  # every column of every event, in the same order
    assert [e["seq"] for e in sorted(after, key=lambda e: e["seq"])] == sorted(
        e["seq"] for e in before
    )
    expected = Counter(f"access_events_{e['occurred_at']:%Y_%m}" for e in before)
    for offset in (-3, -2, -1, 0):
        assert (
            result["by_month"][f"access_events_{_month(offset):%Y_%m}"]
            == expected[f"access_events_{_month(offset):%Y_%m}"]
        )
    for offset in (1, 2, 3):  # made ahead, empty
        assert result["by_month"][f"access_events_{_month(offset):%Y_%m}"] == 0
    assert result["report"].intact and result["report"].events == len(before)
    assert result["newest"]["id"] > max(e["id"] for e in before)
    assert result["again"].intact and result["again"].events == len(before) + 1


def test_every_guarantee_holds_across_the_months(env):
    """On a trail of four months: a patient reads their own events of every month and no one
    else's; no role but the owner reaches a month directly (the months' schema is closed);
    events stay append-only in every month, even for the owner; the application cannot make
    months, the audit reader can (the nightly job); an event for a month with no partition is
    refused, not stored somewhere else."""

    async def work(superuser, owner) -> dict[str, Any]:
        patients = await _released_trail_of_months(superuser, owner)
        await apply_migrations(owner)
        out: dict[str, Any] = {}
        theirs = await superuser.fetchval(
            "select count(*) from data.access_events where patient_id = $1", patients[0]
        )
        async with superuser.transaction():
            await superuser.execute("set local role gateway_app")
            await superuser.execute("select api.enter_scope('patient', $1, null)", patients[0])
            seen = await superuser.fetch("select patient_id, occurred_at from data.access_events")
        out["seen"] = seen
        out["theirs"] = theirs
        month = f"access_events_{_month(-2):%Y_%m}"
        for role in ("gateway_app", "gateway_audit_reader"):
            for attempt in (
                f"select count(*) from audit_partitions.{month}",
                "select data.create_access_event_partitions(1)",
            ):
                try:
                    async with superuser.transaction():
                        await superuser.execute(f"set local role {role}")
                        await superuser.execute(attempt)
                    out[(role, attempt)] = "ok"
                except asyncpg.PostgresError as exc:
                    out[(role, attempt)] = str(exc)
        for statement in (
            f"update audit_partitions.{month} set subject = 'x'",
            f"delete from audit_partitions.{month}",
            f"truncate audit_partitions.{month}",
            "update data.access_events set subject = 'x'",
        ):
            try:
                out[statement] = await owner.execute(statement)
            except asyncpg.PostgresError as exc:
                out[statement] = str(exc)
        try:
            await superuser.execute(
                "insert into data.access_events (occurred_at, request_id, kind, issuer, "
                "subject, role) values ('2099-01-01', 'r', 'denial', 'i', 's', 'support')"
            )
            out["no month"] = "stored"
        except asyncpg.PostgresError as exc:
            out["no month"] = str(exc)
        return out

    out = _on_scratch(env, work)
    months = {f"{row['occurred_at']:%Y-%m}" for row in out["seen"]}
    assert len(out["seen"]) == out["theirs"] > 0
    assert {row["patient_id"] for row in out["seen"]} == {out["seen"][0]["patient_id"]}
    assert len(months) == 4  # the three earlier months and this one
    month = f"access_events_{_month(-2):%Y_%m}"
    for role in ("gateway_app", "gateway_audit_reader"):
        assert out[(role, f"select count(*) from audit_partitions.{month}")] == (
            "permission denied for schema audit_partitions"
        )
    assert out[("gateway_app", "select data.create_access_event_partitions(1)")] == (
        "permission denied for function create_access_event_partitions"
    )
    assert out[("gateway_audit_reader", "select data.create_access_event_partitions(1)")] == "ok"
    for statement in (
        f"update audit_partitions.{month} set subject = 'x'",
        f"delete from audit_partitions.{month}",
        f"truncate audit_partitions.{month}",
    ):
        assert out[statement] == "access_events is append-only", statement
    # Through the trail the owner reads no event (it forces row-level security, and no policy
    # admits its owner), so it changes none.
    assert out["update data.access_events set subject = 'x'"] == "UPDATE 0"
    assert out["no month"].startswith('no partition of relation "access_events" found for row')


@pytest.mark.parametrize("months", [-1, 25])
def test_the_months_ahead_are_bounded(env, months):
    async def work(_superuser, owner) -> str:
        await apply_migrations(owner)
        with pytest.raises(asyncpg.PostgresError) as refused:
            await owner.execute("select data.create_access_event_partitions($1)", months)
        return str(refused.value)

    assert _on_scratch(env, work) == f"months ahead must be between 0 and 24, not {months}"


def test_a_checkpoint_names_a_real_event_and_an_archive_row_only_gains_its_deletion(env):
    """Attack: a stolen audit-reader credential records a checkpoint past an event it altered,
    so that the nightly verify would start after it. The checkpoint is refused unless that
    position holds that hash. Attack: the owner's session rewrites where an archive is (or its
    digest); refused: an archive's row is written once, and only its deletion is marked after."""

    async def work(superuser, owner) -> dict[str, Any]:
        await _released_trail_of_months(superuser, owner)
        await apply_migrations(owner)
        out: dict[str, Any] = {}
        real = await superuser.fetchrow(
            "select chain_id, chain_seq, hash from data.access_events "
            "where chain_id is not null order by seq limit 1"
        )
        for label, digest in (("forged", b"\x00" * 32), ("real", real["hash"])):
            try:
                async with superuser.transaction():
                    await superuser.execute("set local role gateway_audit_reader")
                    await superuser.execute(
                        "select data.record_audit_checkpoint($1, $2, $3)",
                        real["chain_id"],
                        real["chain_seq"],
                        digest,
                    )
                out[label] = "ok"
            except asyncpg.PostgresError as exc:
                out[label] = str(exc)
        out["recorded"] = await superuser.fetch(
            "select chain_id, chain_seq from data.audit_checkpoints"
        )
        await owner.execute(
            "insert into data.audit_archives (partition_name, period_start, period_end, "
            "location, sha256, bytes, events, runs) values ('access_events_2001_01', "
            "'2001-01-01', '2001-02-01', '/archive/a.jsonl.gz', 'ab', 1, 0, '[]')"
        )
        for statement in (
            "update data.audit_archives set location = '/elsewhere'",
            "update data.audit_archives set sha256 = 'cd', deleted_at = now()",
            "delete from data.audit_archives",
            "truncate data.audit_archives cascade",
            "update data.audit_archives set deleted_at = now()",
        ):
            try:
                out[statement] = await owner.execute(statement)
            except asyncpg.PostgresError as exc:
                out[statement] = str(exc)
        return out

    out = _on_scratch(env, work)
    assert out["forged"].startswith("no event at chain ")
    assert out["forged"].endswith(" has that hash")
    assert out["real"] == "ok"
    assert len(out["recorded"]) == 1
    for statement in (
        "update data.audit_archives set location = '/elsewhere'",
        "update data.audit_archives set sha256 = 'cd', deleted_at = now()",
        "delete from data.audit_archives",
        "truncate data.audit_archives cascade",
    ):
        assert out[statement] == "audit_archives is append-only", statement
    assert out["update data.audit_archives set deleted_at = now()"] == "UPDATE 1"


def test_a_checkpoint_only_moves_forward_and_every_one_is_kept(env):
    """Attack: a stolen audit-reader credential moves a chain's checkpoint back (so that a
    rewrite it then hides would be read as checked), or the owner's session removes or changes
    the checkpoints on record. Refused: a checkpoint behind the chain's furthest, a different
    hash at the furthest's position, and any update, delete or truncate. Each checkpoint is a
    row of its own, with the login that recorded it."""

    async def work(superuser, owner) -> dict[str, Any]:
        await _released_trail_of_months(superuser, owner)
        await apply_migrations(owner)
        out: dict[str, Any] = {}
        first, second = await superuser.fetch(
            "select chain_id, chain_seq, hash from data.access_events "
            "where chain_id = (select chain_id from data.access_events where chain_id is not null "
            "group by chain_id having count(*) >= 2 order by chain_id limit 1) "
            "order by chain_seq limit 2"
        )

        async def record(row: Any, digest: bytes | None = None) -> str:
            try:
                async with superuser.transaction():
                    await superuser.execute("set local role gateway_audit_reader")
                    await superuser.execute(
                        "select data.record_audit_checkpoint($1, $2, $3)",
                        row["chain_id"],
                        row["chain_seq"],
                        digest or row["hash"],
                    )
                return "ok"
            except asyncpg.PostgresError as exc:
                return str(exc)

        out["second"] = await record(second)
        out["back"] = await record(first)
        out["same"] = await record(second)
        out["other hash"] = await record(second, first["hash"])
        out["rows"] = [
            dict(row)
            for row in await superuser.fetch(
                "select chain_id, chain_seq, recorded_by from data.audit_checkpoints"
            )
        ]
        for statement in (
            "update data.audit_checkpoints set chain_seq = chain_seq + 1",
            "delete from data.audit_checkpoints",
            "truncate data.audit_checkpoints",
        ):
            try:
                out[statement] = await owner.execute(statement)
            except asyncpg.PostgresError as exc:
                out[statement] = str(exc)
        out["chain"], out["positions"] = (
            second["chain_id"],
            (
                first["chain_seq"],
                second["chain_seq"],
            ),
        )
        return out

    out = _on_scratch(env, work)
    chain, (_, second) = out["chain"], out["positions"]
    assert out["second"] == "ok" and out["same"] == "ok"
    assert out["back"] == (
        f"chain {chain} is checked to position {second}: a checkpoint only moves forward"
    )
    assert out["other hash"] == f"chain {chain} position {second} differs from its checkpoint"
    assert out["rows"] == [{"chain_id": chain, "chain_seq": second, "recorded_by": "postgres"}]
    for statement in (
        "update data.audit_checkpoints set chain_seq = chain_seq + 1",
        "delete from data.audit_checkpoints",
        "truncate data.audit_checkpoints",
    ):
        assert out[statement] == "audit_checkpoints is append-only", statement


def test_a_missing_month_ahead_is_made_and_attached_and_a_second_run_makes_none(env):
    async def work(_superuser, owner) -> tuple[list[str], list[str], bool]:
        await apply_migrations(owner)
        last = f"access_events_{_month(3):%Y_%m}"
        await owner.execute(
            f"alter table data.access_events detach partition audit_partitions.{last}"
        )
        await owner.execute(f"drop table audit_partitions.{last}")
        made = [r[0] for r in await owner.fetch("select data.create_access_event_partitions(3)")]
        again = [r[0] for r in await owner.fetch("select data.create_access_event_partitions(3)")]
        attached = await owner.fetchval(
            "select exists (select from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "where i.inhparent = 'data.access_events'::regclass and c.relname = $1)",
            last,
        )
        return made, again, attached

    made, again, attached = _on_scratch(env, work)
    assert made == [f"access_events_{_month(3):%Y_%m}"] and again == [] and attached
