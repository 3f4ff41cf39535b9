"""The chains' heads kept outside the database (``gateway audit verify --anchor``,
GATEWAY_AUDIT_ANCHOR): the rewrites a superuser can make consistent inside the database (the
events, the chains' head rows and the checkpoints together) pass a verification against the
database alone, and are named by one against the anchor.

Each test has a database of its own (``_make_trail``: real events of this month and a past month
of copies), the anchor a folder of its own, and runs the command as the CronJob does.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.audit.anchor import archive_identity, read_anchor, write_anchor
from gateway.audit.archive_store import FolderStore
from gateway.audit.chain import chain_genesis
from tests.support.audit_history import append_history, rewrite_chain, triggers_off
from tests.support.backup_restore import CREDENTIALS, ObjectStore
from tests.test_audit_archive import _drop, _gateway, _make_trail, _month, _sql


@pytest.fixture
def trail(env, tmp_path):
    """(environment, anchor folder)."""
    made, _, server_url = _make_trail(env, tmp_path / "media", (-1,), 200)
    yield made, tmp_path / "anchor"
    asyncio.run(_drop(server_url, made.admin_url))


async def _heads(connection: asyncpg.Connection) -> dict[int, tuple[int, str]]:
    rows = await connection.fetch(
        "select id, last_seq, last_hash from data.audit_chains where last_seq > 0"
    )
    return {row["id"]: (row["last_seq"], bytes(row["last_hash"]).hex()) for row in rows}


def _anchored(folder: Path) -> dict[int, tuple[int, str]]:
    document = json.loads((folder / "anchor.json").read_text())
    assert document["format"] == "consultation-gateway/audit-anchor"
    return {head["chain"]: (head["position"], head["hash"]) for head in document["heads"]}


def _verify(url: str, *args: str, **environ: str) -> Any:
    return _gateway("audit", "verify", "--database-url", url, *args, **environ)


async def _append(connection: asyncpg.Connection, events: int) -> None:
    """``events`` more copies of real disclosures, this month, their chains continued."""
    templates = await connection.fetch(
        "select patient_id, request_id, kind, issuer, subject, role, actor_id, client_id, "
        "break_glass_reason, objects::text as objects, detail::text as detail, "
        "object_groups::text as object_groups, object_sets, object_counts, object_ids "
        "from data.access_events where kind = 'disclosure' limit 5"
    )
    patients = [row[0] for row in templates if row[0] is not None]
    await append_history(connection, templates, [_month(0)], events, patients)


async def _checkpoints_rewritten(connection: asyncpg.Connection, chain: int) -> None:
    """As a superuser, the chain's checkpoints replaced by one at its (rewritten) head."""
    async with triggers_off(connection):
        await connection.execute("delete from data.audit_checkpoints where chain_id = $1", chain)
        await connection.execute(
            "insert into data.audit_checkpoints (chain_id, chain_seq, hash) "
            "select id, last_seq, last_hash from data.audit_chains where id = $1",
            chain,
        )


async def _cut(connection: asyncpg.Connection, chain: int, keep: int) -> None:
    """As a superuser, the chain's events after position ``keep`` deleted, its head row and
    checkpoints set back to match (what a restore from an older backup also leaves)."""
    async with triggers_off(connection):
        await connection.execute(
            "delete from data.access_events where chain_id = $1 and chain_seq > $2", chain, keep
        )
        await connection.execute(
            "update data.audit_chains c set last_seq = e.chain_seq, last_hash = e.hash "
            "from data.access_events e where c.id = $1 and e.chain_id = $1 and e.chain_seq = $2",
            chain,
            keep,
        )
    await _checkpoints_rewritten(connection, chain)


async def _remove(connection: asyncpg.Connection, chain: int) -> None:
    """As a superuser, the chain removed whole: its events, checkpoints and head row."""
    async with triggers_off(connection):
        for table, column in (
            ("access_events", "chain_id"),
            ("audit_checkpoints", "chain_id"),
            ("audit_chains", "id"),
        ):
            await connection.execute(f"delete from data.{table} where {column} = $1", chain)


def _chain_of(url: str) -> tuple[int, int]:
    """The chain with the most events, and its head's position."""
    row = _sql(
        url,
        lambda c: c.fetchrow(
            "select id, last_seq from data.audit_chains order by last_seq desc, id limit 1"
        ),
    )
    return row["id"], row["last_seq"]


def test_a_rewrite_made_whole_in_the_database_is_named_against_the_anchor(trail):
    """Attack: after a verification wrote its anchor, a superuser rewrites an earlier event (its
    subject), recomputes the hashes of every later event of its chain and its head row, and
    replaces the chain's checkpoints to match: verifying against the database alone finds
    nothing. Expected: against the anchor, the first event after the anchored head does not
    follow it (exit 1); ``--full`` names the event at the anchored position; the anchor is not
    overwritten by a failed run."""
    env, folder = trail
    url = env.admin_url
    first = _verify(
        url, "--full", "--first-anchor", GATEWAY_AUDIT_ANCHOR=str(folder)
    )  # the CronJob's way: its setting
    assert first.returncode == 0, first.stderr
    location = (folder / "anchor.json").resolve()
    assert first.stdout.rstrip().endswith(f"; anchored (the first) at {location})")
    assert _anchored(folder) == _sql(url, _heads)
    chain, anchored = _chain_of(url)

    _sql(url, lambda c: _append(c, 300))  # the day's traffic after the verification
    later = _verify(url, "--anchor", str(folder))
    assert later.returncode == 0, later.stderr
    assert later.stdout.rstrip().endswith(f"; anchored at {location})")
    assert _anchored(folder) == _sql(url, _heads)
    anchored = _anchored(folder)[chain][0]
    _sql(url, lambda c: _append(c, 300))
    anchor_bytes = (folder / "anchor.json").read_bytes()

    async def attack(connection: asyncpg.Connection) -> int:
        await rewrite_chain(connection, chain, anchored - 5, "someone-else")
        await _checkpoints_rewritten(connection, chain)
        return await connection.fetchval(
            "select id from data.access_events where chain_id = $1 and chain_seq = $2",
            chain,
            anchored + 1,
        )

    after = _sql(url, attack)
    at_anchor = _sql(
        url,
        lambda c: c.fetchval(
            "select id from data.access_events where chain_id = $1 and chain_seq = $2",
            chain,
            anchored,
        ),
    )

    alone = _verify(url)  # the database alone: whole again
    assert alone.returncode == 0, alone.stderr
    assert "not anchored outside the database (GATEWAY_AUDIT_ANCHOR)" in alone.stdout
    alone_full = _verify(url, "--full")
    assert alone_full.returncode == 0, alone_full.stderr

    refused = _verify(url, "--anchor", str(folder))
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr == (
        f"gateway: audit chain broken at chain {chain} position {anchored + 1} (event id "
        f"{after}): does not follow position {anchored}\n"
    )
    full = _verify(url, "--full", "--anchor", str(folder))
    assert full.returncode == 1, full.stdout
    assert full.stderr.startswith(
        f"gateway: audit chain broken at chain {chain} position {anchored} (event id "
        f"{at_anchor}): differs from the checkpoint anchored "
    )
    assert full.stderr.endswith(
        f" UTC at {location} (the trail was rewritten after it was verified)\n"
    )
    assert (folder / "anchor.json").read_bytes() == anchor_bytes


def test_a_head_rewritten_with_nothing_after_it_is_named(trail):
    """Attack: the last event a verification anchored rewritten (no event after it), the head
    row and the checkpoints made to match. Expected: the chain's head row differs from the hash
    verified there (exit 1)."""
    env, folder = trail
    url = env.admin_url
    assert _verify(url, "--anchor", str(folder), "--full", "--first-anchor").returncode == 0
    chain, head = _chain_of(url)

    async def attack(connection: asyncpg.Connection) -> None:
        await rewrite_chain(connection, chain, head, "someone-else")
        await _checkpoints_rewritten(connection, chain)

    _sql(url, attack)
    assert _verify(url).returncode == 0
    refused = _verify(url, "--anchor", str(folder))
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr == (
        f"gateway: audit chain broken at chain {chain} position {head}: the chain's head row "
        "differs from the hash verified there\n"
    )


def test_events_cut_from_a_chains_end_are_named(trail):
    """Attack: the last three events of a chain deleted, its head row set back to the event
    before them and its checkpoints to match (what a restore from an older backup also leaves).
    Expected: events were removed after the anchored head (exit 1)."""
    env, folder = trail
    url = env.admin_url
    assert _verify(url, "--anchor", str(folder), "--full", "--first-anchor").returncode == 0
    chain, head = _chain_of(url)

    _sql(url, lambda c: _cut(c, chain, head - 3))
    assert _verify(url).returncode == 0
    refused = _verify(url, "--anchor", str(folder))
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr == (
        f"gateway: audit chain broken after chain {chain} position {head}: events were removed\n"
    )


def test_an_anchor_that_is_not_one_is_refused_and_left_as_it_is(trail):
    """Attack: the anchor replaced by a file no verification wrote (so that verify would start
    afresh, from the database's checkpoints). Expected: refused naming it (exit 2); nothing is
    recorded and the file stays as found."""
    env, folder = trail
    url = env.admin_url
    folder.mkdir()
    (folder / "anchor.json").write_text('{"format": "something else", "version": 1}\n')
    checkpoints = _sql(url, lambda c: c.fetchval("select count(*) from data.audit_checkpoints"))
    refused = _verify(url, "--anchor", str(folder))
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gateway: {(folder / 'anchor.json').resolve()} is not an audit anchor (ValueError: "
        "format 'something else' version 1); it was written by no verification: put back the "
        "one the store's versions keep\n"
    )
    assert (folder / "anchor.json").read_text() == '{"format": "something else", "version": 1}\n'
    assert checkpoints == _sql(
        url, lambda c: c.fetchval("select count(*) from data.audit_checkpoints")
    )


def test_a_chain_removed_whole_is_named(trail):
    """Attack: one chain's events, head row and checkpoints all deleted, as if it never was.
    Expected: the anchored chain's events were removed (exit 1)."""
    env, folder = trail
    url = env.admin_url
    assert _verify(url, "--anchor", str(folder), "--full", "--first-anchor").returncode == 0
    chain, head = _chain_of(url)

    _sql(url, lambda c: _remove(c, chain))
    assert _verify(url).returncode == 0
    refused = _verify(url, "--anchor", str(folder))
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr == (
        f"gateway: audit chain broken after chain {chain} position {head}: events were removed\n"
    )


def test_the_anchor_in_an_object_store_is_read_and_written_there(trail, tmp_path):
    """GATEWAY_AUDIT_ANCHOR=s3://bucket/prefix (an S3-compatible server: moto's; its endpoint
    the media store's setting): the first run writes the anchor there, the next reads it and
    moves it on, and a rewrite is named against it; a bucket that is not there is named (exit
    2), nothing verified without it."""
    env, _ = trail
    url = env.admin_url
    store = ObjectStore(tmp_path)
    try:
        store.client().create_bucket(Bucket="anchors")
        s3 = {
            **CREDENTIALS,
            "GATEWAY_MEDIA_S3_ENDPOINT_URL": store.url,
            "GATEWAY_AUDIT_ANCHOR": "s3://anchors/consultation/trail/",
        }
        first = _verify(url, "--full", "--first-anchor", **s3)
        assert first.returncode == 0, first.stderr
        location = "s3://anchors/consultation/trail/anchor.json"
        assert first.stdout.rstrip().endswith(f"; anchored (the first) at {location})")

        def anchored() -> dict[int, tuple[int, str]]:
            body = store.client().get_object(Bucket="anchors", Key="consultation/trail/anchor.json")
            document = json.loads(body["Body"].read())
            return {h["chain"]: (h["position"], h["hash"]) for h in document["heads"]}

        assert anchored() == _sql(url, _heads)
        _sql(url, lambda c: _append(c, 50))
        later = _verify(url, **s3)
        assert later.returncode == 0, later.stderr
        assert later.stdout.rstrip().endswith(f"; anchored at {location})")
        assert anchored() == _sql(url, _heads)
        chain, head = _chain_of(url)

        async def attack(connection: asyncpg.Connection) -> None:
            await rewrite_chain(connection, chain, head, "someone-else")
            await _checkpoints_rewritten(connection, chain)

        _sql(url, attack)
        refused = _verify(url, **s3)
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr == (
            f"gateway: audit chain broken at chain {chain} position {head}: the chain's head "
            "row differs from the hash verified there\n"
        )
        missing = _verify(url, **{**s3, "GATEWAY_AUDIT_ANCHOR": "s3://no-such-bucket/trail"})
        assert missing.returncode == 2
        assert missing.stderr.startswith(
            "gateway: there is no audit anchor at s3://no-such-bucket/trail/anchor.json: "
        )
    finally:
        store.stop()


def test_a_missing_anchor_is_refused_and_a_first_one_written_only_once(trail, tmp_path):
    """Attack: the anchor deleted from its store, so that verify would start afresh from the
    database's checkpoints. Expected: refused naming where it should be (exit 2), nothing
    recorded; ``--first-anchor`` writes the first one, and is refused once there is one."""
    env, folder = trail
    url = env.admin_url
    location = (folder / "anchor.json").resolve()
    missing = _verify(url, "--anchor", str(folder))
    assert missing.returncode == 2
    assert missing.stderr == (
        f"gateway: there is no audit anchor at {location}: the first verification against it "
        "writes it with --full --first-anchor; after that, a missing anchor was removed (put back "
        "the one the store's versions keep)\n"
    )
    assert _sql(url, lambda c: c.fetchval("select count(*) from data.audit_checkpoints")) == 0
    assert _verify(url, "--anchor", str(folder), "--full", "--first-anchor").returncode == 0
    again = _verify(url, "--anchor", str(folder), "--full", "--first-anchor")
    assert again.returncode == 2
    assert again.stderr.startswith(f"gateway: an audit anchor is already at {location} (written ")
    assert again.stderr.endswith("): --first-anchor would start the trail's verification afresh\n")
    not_full = _verify(url, "--anchor", str(tmp_path / "other"), "--first-anchor")
    assert not_full.returncode == 2
    assert not_full.stderr == (
        "gateway: --first-anchor needs --full: the first anchor is written once every event and "
        "every archived month has been verified\n"
    )
    alone = _verify(url, "--full", "--first-anchor")
    assert alone.returncode == 2
    assert alone.stderr == "gateway: --first-anchor needs --anchor or GATEWAY_AUDIT_ANCHOR\n"


@pytest.mark.parametrize("cut", ["end", "whole"])
def test_full_holds_every_chain_to_its_anchored_head_and_keeps_the_anchor(trail, cut):
    """Attack: a chain's last three events cut (its head row and checkpoints set back to match),
    or the chain removed whole, then ``--full`` run, which walks from the start and would write
    the shorter chain as the next anchor. Expected: the chain ends before its anchored head:
    events were removed (exit 1); the anchor is left as it was."""
    env, folder = trail
    url = env.admin_url
    assert _verify(url, "--anchor", str(folder), "--full", "--first-anchor").returncode == 0
    chain, head = _chain_of(url)
    anchor_bytes = (folder / "anchor.json").read_bytes()

    _sql(url, lambda c: _cut(c, chain, head - 3) if cut == "end" else _remove(c, chain))
    assert _verify(url, "--full").returncode == 0  # the database alone
    refused = _verify(url, "--full", "--anchor", str(folder))
    assert refused.returncode == 1, refused.stdout
    expected = (
        f"broken after chain {chain} position {head - 3}: events were removed (the anchor "
        f"holds chain {chain} position {head})"
        if cut == "end"
        else f"broken after chain {chain} position 0: events were removed"
    )
    assert refused.stderr == f"gateway: audit chain {expected}\n"
    assert (folder / "anchor.json").read_bytes() == anchor_bytes


def test_a_month_removed_behind_a_forged_deleted_archive_is_named(trail):
    """Attack: a chain's events deleted and a catalog row forged for them, an archive "deleted
    under retention" whose run covers them to a made-up head (the head row set to it), so that
    the walk trusts the run and no file is read. Expected: the catalog holds an archive marked
    deleted that no anchored verification saw archived (exit 1), incremental and ``--full``."""
    env, folder = trail
    url = env.admin_url
    assert _verify(url, "--anchor", str(folder), "--full", "--first-anchor").returncode == 0
    chain, head = _chain_of(url)
    forged = "ab" * 32
    runs = json.dumps(
        [
            {
                "chain": chain,
                "first": 1,
                "last": head + 1,
                "prev_hash": chain_genesis(chain).hex(),
                "hash": forged,
            }
        ]
    )

    async def attack(connection: asyncpg.Connection) -> None:
        async with triggers_off(connection):
            await connection.execute("delete from data.access_events where chain_id = $1", chain)
            await connection.execute(
                "delete from data.audit_checkpoints where chain_id = $1", chain
            )
            await connection.execute(
                "update data.audit_chains set last_seq = $2, last_hash = $3 where id = $1",
                chain,
                head + 1,
                bytes.fromhex(forged),
            )
            await connection.execute(
                "insert into data.audit_archives (partition_name, period_start, period_end, "
                "location, sha256, bytes, events, runs, deleted_at) values "
                "('access_events_1999_01', '1999-01-01Z', '1999-02-01Z', 'x', 'x', 0, $1, "
                "$2::jsonb, now())",
                head + 1,
                runs,
            )

    _sql(url, attack)
    for mode in ((), ("--full",)):
        refused = _verify(url, *mode, "--anchor", str(folder))
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr == (
            "gateway: audit chain broken at archive access_events_1999_01: marked deleted, but "
            "no anchored verification saw it archived\n"
        )


def test_a_month_archived_after_the_anchor_is_checked_from_its_file(trail, tmp_path):
    """A month archived after the last anchored run: its runs cover anchored heads, and the
    walk from the anchor trusts them, so the next anchored run checks its file first (from the
    archive store; without one it stops, exit 2). A file rewritten is named (exit 1); the file
    put back, the run passes and the anchor holds the archive. Attack: the catalog row then
    deleted, as if the month had never been archived: named (exit 1)."""
    env, folder = trail
    url = env.admin_url
    archives = tmp_path / "audit-archive"
    assert _verify(url, "--anchor", str(folder), "--full", "--first-anchor").returncode == 0
    name = f"access_events_{_month(-1):%Y_%m}"
    done = _gateway(
        "audit", "archive", "--before", f"{_month(0):%Y-%m-%d}", "--database-url", url,
        "--archive-root", str(archives),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    no_store = _verify(url, "--anchor", str(folder))
    assert no_store.returncode == 2
    assert no_store.stderr.startswith("gateway: the audit archive needs a place: ")

    path = archives / f"{name}.jsonl.gz"
    original = path.read_bytes()
    path.write_bytes(original[:-40])
    try:
        broken = _verify(url, "--anchor", str(folder), "--archive-root", str(archives))
    finally:
        path.write_bytes(original)
    assert broken.returncode == 1
    assert broken.stderr == (
        f"gateway: audit chain broken at archive {path.resolve()}: its bytes differ from those "
        "archived (digest)\n"
    )
    passed = _verify(url, "--anchor", str(folder), "--archive-root", str(archives))
    assert passed.returncode == 0, passed.stderr
    document = json.loads((folder / "anchor.json").read_text())
    assert [a["partition"] for a in document["archives"]] == [name]

    async def forge(connection: asyncpg.Connection, change: str, *args: Any) -> None:
        async with triggers_off(connection):
            await connection.execute(f"update data.audit_archives set {change}", *args)

    row = _sql(
        url, lambda c: c.fetchrow("select runs, period_end, events from data.audit_archives")
    )
    # Attack: the anchored row's runs, month or count changed, so that the walk trusts a gap
    # (or, its month moved on, reads no live event).
    for change in (
        "runs = runs || runs",
        "period_end = period_end + interval '10 years'",
        "events = events + 1",
    ):
        _sql(url, lambda c, change=change: forge(c, change))
        changed = _verify(url, "--anchor", str(folder))
        assert changed.returncode == 1, changed.stdout
        assert changed.stderr == (
            f"gateway: audit chain broken at archive {name}: its catalog row differs from the "
            "anchored one\n"
        )
        back = (row["runs"], row["period_end"], row["events"])
        _sql(url, lambda c, back=back: forge(c, "runs = $1, period_end = $2, events = $3", *back))
    assert _verify(url, "--anchor", str(folder)).returncode == 0  # as it was

    # An anchor whose head lies inside a run of an archive it saw (no verification writes one:
    # the walk goes past every run's end) is not trusted across that run.
    saved = (folder / "anchor.json").read_text()
    document = json.loads(saved)
    run = next(r for r in json.loads(row["runs"]) if r["last"] > r["first"])
    for head in document["heads"]:
        if head["chain"] == run["chain"]:
            head["position"] = run["first"]
    (folder / "anchor.json").write_text(json.dumps(document))
    inside = _verify(url, "--anchor", str(folder))
    (folder / "anchor.json").write_text(saved)
    assert inside.returncode == 1, inside.stdout
    assert inside.stderr == (
        f"gateway: audit chain broken at archive {name}: its run of chain {run['chain']} goes on "
        f"past the head anchored at position {run['first']}, and its file is not read (deleted, "
        "or seen by an anchored run that went no further)\n"
    )

    async def attack(connection: asyncpg.Connection) -> None:
        async with triggers_off(connection):
            await connection.execute("delete from data.audit_archives")

    _sql(url, attack)
    refused = _verify(url, "--anchor", str(folder))
    assert refused.returncode == 1
    assert refused.stderr == (
        f"gateway: audit chain broken at archive {name}: anchored, but no longer in the catalog\n"
    )


def test_an_anchor_written_meanwhile_further_on_is_kept(tmp_path):
    """A long ``--full`` ends after a nightly run wrote its anchor further on: the anchor keeps
    each chain's furthest head and every archive either saw, so it never moves back."""
    store = FolderStore(tmp_path)
    month = {
        "partition_name": "access_events_2026_01",
        "period_start": datetime(2026, 1, 1, tzinfo=UTC),
        "period_end": datetime(2026, 2, 1, tzinfo=UTC),
        "sha256": "aa",
        "events": 3,
        "runs": '[{"chain": 1, "first": 1, "last": 3, "hash": "bb", "prev_hash": "cc"}]',
        "deleted": False,
    }
    write_anchor(store, {1: (10, b"\x01" * 32), 2: (5, b"\x02" * 32)}, [month])
    write_anchor(store, {1: (8, b"\x03" * 32), 2: (7, b"\x04" * 32), 3: (0, b"")}, [])
    anchor = read_anchor(store)
    assert anchor is not None
    assert anchor.heads == {1: (10, b"\x01" * 32), 2: (7, b"\x04" * 32)}
    assert anchor.archives == {"access_events_2026_01": (archive_identity(month), False)}
    assert anchor.catalog([month]) == (None, [])
    for change in (
        {"events": 4},
        {"period_end": datetime(2026, 3, 1, tzinfo=UTC)},
        {"runs": '[{"chain": 1, "first": 1, "last": 4, "hash": "bb", "prev_hash": "cc"}]'},
    ):
        assert anchor.catalog([{**month, **change}]) == (
            "archive access_events_2026_01: its catalog row differs from the anchored one",
            [],
        )
    assert (
        anchor.catalog([month, month])[0] == "archive access_events_2026_01: in the catalog twice"
    )
    assert anchor.catalog([{**month, "deleted": True}]) == (None, [])  # retention since


def test_a_chain_the_anchor_lacks_is_walked_from_its_start(trail):
    """Attack: an event fabricated in a chain no anchored run saw (a chain added, its event's
    hash made up), its head row and a checkpoint set past it, so that a walk starting at the
    database's checkpoints never reads it. Expected: against the anchor that chain is walked
    from its start and the event named (exit 1)."""
    env, folder = trail
    url = env.admin_url
    assert _verify(url, "--anchor", str(folder), "--full", "--first-anchor").returncode == 0
    unused = _sql(url, lambda c: c.fetchval("select max(id) + 1 from data.audit_chains"))
    assert unused not in _anchored(folder)
    made_up = bytes(range(32))

    async def attack(connection: asyncpg.Connection) -> int:
        async with triggers_off(connection):
            event = await connection.fetchval(
                "insert into data.access_events (occurred_at, request_id, kind, issuer, subject, "
                "role, detail, objects, seq, prev_hash, hash, chain_id, chain_seq) "
                "select now(), 'fabricated', kind, issuer, subject, role, detail, objects, "
                "(select max(seq) + 1 from data.access_events), $2, $3, $1, 1 "
                "from data.access_events where chain_id is not null limit 1 returning id",
                unused,
                chain_genesis(unused),
                made_up,
            )
            await connection.execute(
                "insert into data.audit_chains (id, last_seq, last_hash) values ($1, 1, $2)",
                unused,
                made_up,
            )
            await connection.execute(
                "insert into data.audit_checkpoints (chain_id, chain_seq, hash) values ($1, 1, $2)",
                unused,
                made_up,
            )
        return event

    event = _sql(url, attack)
    assert _verify(url).returncode == 0  # from the database's checkpoints: never read
    refused = _verify(url, "--anchor", str(folder))
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr == (
        f"gateway: audit chain broken at chain {unused} position 1 (event id {event}): contents "
        "were altered\n"
    )
