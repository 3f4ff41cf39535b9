"""Archiving the audit trail without a gap for a rewrite to hide in, an event to be lost in, or
a writer to wait on (issue 26, after review).

Each test has a database of its own (``_make_trail``: real events and earlier months of copies).
A rewrite of an event before a checkpoint (its hashes recomputed to the chain's head, as a
superuser can) is refused by the archive and named by ``--full``; an archived month waiting for
its drop is read from its archive, closed to a late writer, and its drop waits on no writer; a
month is archived only an hour after its end by the database's clock.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from gateway.audit.archive import archive_before, drop_archived
from gateway.audit.archive_file import ArchiveError
from gateway.audit.archive_store import FolderStore
from gateway.audit.chain import lock_trail, verify_chain, walk_from
from gateway.errors import ConfigurationError
from tests.support.audit_history import append_history, rewrite_chain, triggers_off
from tests.test_audit_archive import PER_MONTH, _drop, _gateway, _make_trail, _month, _sql


@pytest.fixture
def trail(env, tmp_path):
    """(environment, archive folder): two past months of copies and this month's real events."""
    made, _, server_url = _make_trail(env, tmp_path / "media", (-3, -2), PER_MONTH // 2)
    yield made, tmp_path / "audit-archive"
    asyncio.run(_drop(server_url, made.admin_url))


def _partitions(connection: asyncpg.Connection) -> Any:
    return connection.fetch(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'audit_partitions' order by c.relname"
    )


async def _more_history(connection: asyncpg.Connection, offset: int, events: int) -> None:
    """A month ``offset`` months from this one made (as the owner, as migrate makes them) and
    ``events`` copies of real disclosures appended to it, their chains continued."""
    templates = await connection.fetch(
        "select patient_id, request_id, kind, issuer, subject, role, actor_id, client_id, "
        "break_glass_reason, objects::text as objects, detail::text as detail, "
        "object_groups::text as object_groups, object_sets, object_counts, object_ids "
        "from data.access_events where kind = 'disclosure' limit 5"
    )
    owner = await connection.fetchval(
        "select nspowner::regrole::text from pg_namespace where nspname = 'data'"
    )
    await connection.execute(f"set role {owner}")
    await connection.execute(
        f"create table audit_partitions.access_events_{_month(offset):%Y_%m} partition of "
        f"data.access_events for values from ('{_month(offset).isoformat()}') "
        f"to ('{_month(offset + 1).isoformat()}')"
    )
    await connection.execute("reset role")
    patients = [row[0] for row in templates if row[0] is not None]
    await append_history(connection, templates, [_month(offset)], events, patients)


def test_an_event_rewritten_before_a_checkpoint_is_not_archived_and_full_names_it(trail):
    """Attack: after the nightly verify recorded its checkpoints, a superuser rewrites an event
    of last month that lies before one (its subject), recomputes the hashes of every later event
    of the chain and the head row, and then archives the month, so that the incremental verify,
    which trusts an archived run a checkpoint lies in, would find nothing. Refused: the archive
    holds every checkpoint in the month against the event there, names it and leaves the month
    in the database (exit 2); ``--full`` names it too (exit 1)."""
    env, folder = trail
    url = env.admin_url
    assert _gateway("audit", "verify", "--database-url", url).returncode == 0

    async def rewrite(connection: asyncpg.Connection) -> dict[str, Any]:
        # More events after the checkpoints (last month), so that the checkpoints lie inside
        # the months archived, not at the ends of their runs.
        await _more_history(connection, -1, PER_MONTH)
        # A checkpoint in the month two months back, with an event of its chain before it there.
        target = await connection.fetchrow(
            "select c.chain_id, c.chain_seq as checkpoint, min(e.chain_seq) as victim "
            "from data.audit_checkpoints c join data.access_events e "
            "on e.chain_id = c.chain_id and e.chain_seq < c.chain_seq "
            "and e.occurred_at >= $1 and e.occurred_at < $2 "
            "where exists (select from data.access_events k where k.chain_id = c.chain_id "
            "and k.chain_seq = c.chain_seq and k.occurred_at >= $1 and k.occurred_at < $2) "
            "group by c.chain_id, c.chain_seq order by c.chain_id limit 1",
            _month(-2),
            _month(-1),
        )
        assert target is not None
        await rewrite_chain(connection, target["chain_id"], target["victim"], "someone-else")
        event = await connection.fetchval(
            "select id from data.access_events where chain_id = $1 and chain_seq = $2",
            target["chain_id"],
            target["checkpoint"],
        )
        return {**dict(target), "event": event}

    target = _sql(url, rewrite)
    chain, position, event = target["chain_id"], target["checkpoint"], target["event"]
    month = f"access_events_{_month(-2):%Y_%m}"

    refused = _gateway(
        "audit", "archive", "--before", f"{_month(-1):%Y-%m-%d}", "--database-url", url,
        "--archive-root", str(folder),
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout
    # The month before it, untouched, was archived and dropped first, and is reported.
    before = f"access_events_{_month(-3):%Y_%m}"
    assert [line.split(":")[0] for line in refused.stdout.splitlines()] == [
        f"archived {before}",
        f"dropped {before} from the database",
    ]
    line = refused.stderr.splitlines()
    assert len(line) == 1
    assert line[0].startswith(
        f"gateway: archive: {(folder / f'{month}.jsonl.gz').resolve()} read back: "
        f"chain {chain} position {position} (event id {event}): differs from the checkpoint "
        "recorded "
    )
    assert line[0].endswith(
        f" by postgres (the trail was rewritten after it was verified) ({month} and the months "
        "after it stay in the database)"
    )
    state = _sql(
        url,
        lambda c: c.fetch("select partition_name from data.audit_archives order by 1"),
    )
    # The month before it (untouched) was archived; the rewritten one stays.
    assert [row[0] for row in state] == [f"access_events_{_month(-3):%Y_%m}"]
    assert month in [row[0] for row in _sql(url, _partitions)]

    full = _gateway(
        "audit", "verify", "--full", "--database-url", url, "--archive-root", str(folder)
    )
    assert full.returncode == 1
    assert full.stderr.startswith(
        f"gateway: audit chain broken at chain {chain} position {position} (event id {event}): "
        "differs from the checkpoint recorded "
    )
    assert full.stderr.endswith(" by postgres (the trail was rewritten after it was verified)\n")


def test_an_archived_month_waiting_for_its_drop_is_read_from_its_archive_and_closed(trail):
    """The drop of an archived month waits (an audit writer's transaction is open: DETACH
    CONCURRENTLY waits for it to end). Meanwhile: another writer's event commits at once (the
    drop queues no one); the trail verifies with every event once (the month from its archive,
    not also from its partition); an event a late transaction adds to the month is refused, not
    kept where it would be dropped. The month after it, archived in the same run, does not start
    its detach (the trail may have only one pending): both are left, and the next run drops
    both, the pending one first."""
    env, folder = trail
    url = env.admin_url
    month, second = f"access_events_{_month(-3):%Y_%m}", f"access_events_{_month(-2):%Y_%m}"
    insert = (
        "insert into data.access_events (request_id, kind, issuer, subject, role, detail) "
        "values ($1, 'audit-restored', 'urn:gateway:cli', 'test', 'operator', "
        '\'{"partition": "p", "location": "l", "events": 0}\')'
    )

    async def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        before = await _count(url)
        out["seqs"] = await _count(url, "seq is not null")
        writer, other, archiver = [await asyncpg.connect(url) for _ in range(3)]
        try:
            opened = writer.transaction()
            await opened.start()
            await writer.execute(insert, "open-writer")
            running = asyncio.create_task(
                archive_before(
                    archiver, FolderStore(folder), _month(-1), "test-officer", drop_wait="4s"
                )
            )
            await asyncio.sleep(1.5)  # archived by now; its drop waits for the open writer
            out["waiting"] = not running.done()
            # Another writer is not held by the drop's wait.
            await asyncio.wait_for(other.execute(insert, "other-writer"), timeout=1)
            archived, dropped, left = await running
            out["archived"] = [a.partition for a in archived]
            out["dropped"], out["left"] = dropped, left
            out["verified"] = await verify_chain(other)
            exported = _gateway(
                "audit", "export", "--since", "2000-01-01", "--database-url", url,
                "--archive-root", str(folder),
            )  # fmt: skip
            assert exported.returncode == 0, exported.stderr
            out["exported"] = [json.loads(line)["id"] for line in exported.stdout.splitlines()]
            out["count"] = await _count(url)
            out["before"] = before
            # An event dated in the month (its time set here: the chain trigger is off), through
            # the trail (the month is detaching: no partition takes it) and into the month's
            # own table (closed by its constraint).
            for label, table in (("late", "data.access_events"), ("late here", month)):
                try:
                    async with triggers_off(other):
                        await other.execute(
                            f"insert into {'audit_partitions.' * (table == month)}{table} "
                            "(id, occurred_at, request_id, kind, issuer, subject, role) "
                            f"{'overriding system value ' * (table != month)}values "
                            "(999999999, $1, 'late', 'audit-restored', 'x', 'x', 'operator')",
                            _month(-3) + timedelta(days=3),
                        )
                    out[label] = "kept"
                except asyncpg.PostgresError as exc:
                    out[label] = str(exc)
            await opened.commit()
            out["finally"] = await drop_archived(archiver)
            out["partitions"] = [row[0] for row in await _partitions(other)]
            out["after"] = await verify_chain(other)
        finally:
            for connection in (writer, other, archiver):
                await connection.close()
        return out

    out = asyncio.run(work())
    assert out["archived"] == [month, second]
    assert out["dropped"] == [] and out["left"] == [month, second]
    assert out["waiting"]
    # Every event once: those before, the archive's own two events, the two writers' (one
    # still open, not yet visible).
    assert out["verified"].intact, out["verified"].message
    assert out["verified"].events == out["before"] + 3
    # and exported once: from the archive, not also from the month's table.
    assert len(out["exported"]) == len(set(out["exported"])) == out["seqs"] + 3
    assert out["late"].startswith('no partition of relation "access_events" found for row\n')
    assert out["late here"].startswith(
        f'new row for relation "{month}" violates check constraint "{month}_archived"\n'
    )
    assert out["finally"] == ([month, second], [])
    assert month not in out["partitions"] and second not in out["partitions"]
    assert out["after"].intact and out["after"].events == out["before"] + 4


async def _count(url: str, where: str = "true") -> int:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(f"select count(*) from data.access_events where {where}")
    finally:
        await connection.close()


def test_a_month_is_archived_only_its_grace_after_its_end_by_the_databases_clock(trail):
    """A transaction begun before midnight may still write events dated in the month that ended
    (an event's time is its transaction's start): the archive waits ``GRACE`` after the end, by
    the database's clock, not the client's. Shown with a grace longer than the month's age."""
    env, folder = trail

    async def work() -> str:
        connection = await asyncpg.connect(env.admin_url)
        try:
            with pytest.raises(ConfigurationError) as refused:
                await archive_before(
                    connection,
                    FolderStore(folder),
                    _month(-2),
                    "test-officer",
                    grace=timedelta(days=400),
                )
            return refused.value.message
        finally:
            await connection.close()

    message = asyncio.run(work())
    end = _month(-2)
    assert message == (
        f"access_events_{_month(-3):%Y_%m} ended at {end:%Y-%m-%d} 00:00 UTC, less than "
        "400 days, 0:00:00 ago by the database's clock (a transaction begun before then may "
        f"still be writing to it): archive it after {end + timedelta(days=400):%Y-%m-%d} "
        "00:00 UTC"
    )
    assert not list(folder.glob("*.jsonl.gz")) if folder.exists() else True


def test_a_month_made_again_after_its_archive_is_neither_archived_nor_dropped(trail):
    """Failure: a month already archived (and dropped) is made again by hand, and events are
    written to it. Its name is in the catalog, but its events are in no archive: the archive
    refuses to run (naming it) rather than take it for one it closed and drop it."""
    env, folder = trail
    month = f"access_events_{_month(-3):%Y_%m}"

    async def work() -> dict[str, Any]:
        connection = await asyncpg.connect(env.admin_url)
        try:
            store = FolderStore(folder)
            first = await archive_before(connection, store, _month(-2), "test-officer")
            await _more_history(connection, -3, 4)
            with pytest.raises(ArchiveError) as refused:
                await archive_before(connection, store, _month(-2), "test-officer")
            return {
                "first": [a.partition for a in first[0]],
                "refused": str(refused.value),
                "kept": await connection.fetchval(f"select count(*) from audit_partitions.{month}"),
            }
        finally:
            await connection.close()

    out = asyncio.run(work())
    assert out["first"] == [month]
    assert out["refused"] == (
        f"audit_partitions holds months already archived that their archive did not close: "
        f"{month} (archived at {(folder / f'{month}.jsonl.gz').resolve()}); their events are in "
        "no archive: nothing was archived or dropped"
    )
    assert out["kept"] == 4


def test_a_verify_under_way_keeps_the_months_it_has_yet_to_read(trail):
    """A verify's transaction began (its snapshot: no month archived yet), then a month is
    archived and its drop tried. The drop waits for the verify (which locked the trail first)
    instead of taking away a month the verify's snapshot still counts as live: the verify ends
    intact, not with a false "event missing"; the next run drops the month."""
    env, folder = trail
    month = f"access_events_{_month(-3):%Y_%m}"

    async def work() -> dict[str, Any]:
        verifier, archiver = [await asyncpg.connect(env.admin_url) for _ in range(2)]
        try:
            walk = verifier.transaction(isolation="repeatable_read", readonly=True)
            await walk.start()
            await lock_trail(verifier)
            await verifier.fetchval("select count(*) from data.audit_archives")  # the snapshot
            _, dropped, left = await archive_before(
                archiver, FolderStore(folder), _month(-2), "test-officer", drop_wait="1s"
            )
            report, _ = await walk_from(verifier, None, None)
            await walk.commit()
            return {
                "dropped": dropped,
                "left": left,
                "report": report,
                "then": await drop_archived(archiver),
            }
        finally:
            await verifier.close()
            await archiver.close()

    out = asyncio.run(work())
    assert out["dropped"] == [] and out["left"] == [month]
    assert out["report"].intact, out["report"].message
    assert out["then"] == ([month], [])


def test_a_month_a_long_reader_holds_is_not_closed_and_stays(trail, monkeypatch):
    """A long transaction reads the month (a verify or an export over every month) while the
    archive would close it: closing waits a second at a time, then gives up naming the month;
    nothing is written, the month stays live and open (two attempts here, thirty in a run)."""
    import gateway.audit.archive as archive

    monkeypatch.setattr(archive, "_LOCK_ATTEMPTS", 2)
    env, folder = trail
    month = f"access_events_{_month(-3):%Y_%m}"

    async def work() -> dict[str, Any]:
        reader, archiver = [await asyncpg.connect(env.admin_url) for _ in range(2)]
        try:
            async with reader.transaction():
                await reader.fetchval(f"select count(*) from audit_partitions.{month}")
                with pytest.raises(ArchiveError) as stopped:
                    await archive_before(archiver, FolderStore(folder), _month(-2), "test")
            return {
                "message": str(stopped.value),
                "catalog": await archiver.fetchval("select count(*) from data.audit_archives"),
                "closed": await archiver.fetchval(
                    "select count(*) from pg_constraint where conname = $1", f"{month}_archived"
                ),
            }
        finally:
            await reader.close()
            await archiver.close()

    out = asyncio.run(work())
    assert out["message"] == (
        f"{month} could not be closed: a transaction reading it held it for 2 attempts of a "
        f"second (pg_stat_activity names it) ({month} and the months after it stay in the "
        "database)"
    )
    assert out["catalog"] == 0 and out["closed"] == 0
    assert not folder.exists() or not list(folder.iterdir())
