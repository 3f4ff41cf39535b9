"""The audit archive when something is wrong (issue 26): an archive past the retention that is
not in the store the run was given, a file left behind by a deletion, an object store that
refuses the archive, an archive file gone when it is restored or verified, and the months ahead
that cannot get their lock.

Each failure is one line on stderr, never a traceback, with the exit code a script can act on;
and a failure changes nothing: the trail, its catalog (``data.audit_archives``) and the archives
stay as they were.
The commands are the real ``gateway audit ...`` run as a user runs them (``_gateway``), on
databases of their own made with ``tests.test_audit_archive``'s helpers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.backup_restore import CREDENTIALS, ObjectStore
from tests.test_audit_archive import _drop, _gateway, _make_trail, _month, _sql

PER_MONTH = 5


def _partition(offset: int) -> str:
    return f"access_events_{_month(offset):%Y_%m}"


def _partitions(url: str) -> set[str]:
    rows = _sql(
        url,
        lambda c: c.fetch(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "where i.inhparent = 'data.access_events'::regclass"
        ),
    )
    return {row[0] for row in rows}


def _catalog(url: str, name: str) -> Any:
    return _sql(
        url,
        lambda c: c.fetchrow(
            "select location, deleted_at from data.audit_archives where partition_name = $1",
            name,
        ),
    )


def _events(url: str, kind: str, name: str) -> int:
    return _sql(
        url,
        lambda c: c.fetchval(
            "select count(*) from data.access_events where kind = $1 and detail->>'partition' = $2",
            kind,
            name,
        ),
    )


def _archive(url: str, root: Path, *, retention: str = "6y") -> Any:
    """``gateway audit archive`` of every month before last month's start, to ``root``."""
    return _gateway(
        "audit", "archive", "--before", f"{_month(-2):%Y-%m-%d}", "--database-url", url,
        "--archive-root", str(root), "--operator", "test-officer",
        GATEWAY_AUDIT_RETENTION=retention,
    )  # fmt: skip


@pytest.fixture
def fresh(env, tmp_path):
    """A database of its own with one past month (three months ago) of ``PER_MONTH`` events,
    for a test that archives or deletes: its admin URL."""
    made, _, server_url = _make_trail(env, tmp_path / "media", (-3,), PER_MONTH)
    yield made.admin_url
    asyncio.run(_drop(server_url, made.admin_url))


@pytest.fixture(scope="module")
def shared(env, tmp_path_factory):
    """A database of its own with two past months, for the tests that archive nothing (the
    month the failing archive tries stays where it is): its admin URL."""
    made, _, server_url = _make_trail(
        env, Path(tmp_path_factory.mktemp("errors-media")), (-3, -2), PER_MONTH
    )
    yield made.admin_url
    asyncio.run(_drop(server_url, made.admin_url))


def test_retention_refuses_to_delete_an_archive_that_is_not_in_this_store(fresh, tmp_path):
    """Failure: the archive run is given another store (a new --archive-root, or settings changed
    since) than the one a month past the retention was archived to. Deleting its file by name in
    this store would delete nothing, or another file, while the catalog said it was gone: the
    run refuses before anything is marked deleted (exit 2, naming the month and where it is);
    with the store it was archived to, it is deleted."""
    url = fresh
    first, other = tmp_path / "first", tmp_path / "other"
    name = _partition(-3)
    archived = _archive(url, first)
    assert archived.returncode == 0, archived.stderr
    path = first / f"{name}.jsonl.gz"
    assert path.exists()

    refused = _archive(url, other, retention="1mo")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gateway: retention: past the retention but not in this store: {name} (at "
        f"{path.resolve()}); "
        "nothing was deleted: run with the store they were archived to (--archive-root, or "
        "the settings of that time)\n"
    )
    assert refused.stdout == ""
    assert path.exists()
    row = _catalog(url, name)
    assert row["location"] == str(path.resolve()) and row["deleted_at"] is None
    assert _events(url, "audit-archive-deleted", name) == 0

    deleted = _archive(url, first, retention="1mo")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == f"deleted {name}: past the retention of 1 month\n"
    assert deleted.stderr == ""
    assert not path.exists()
    assert _catalog(url, name)["deleted_at"] is not None
    assert _events(url, "audit-archive-deleted", name) == 1


def test_a_file_left_behind_by_a_deletion_is_deleted_by_the_next_run(fresh, tmp_path):
    """Failure: a deletion's file is still there after its month was marked deleted (the run
    stopped between the commit and the delete, or a backup of the folder was put back). The
    next run deletes it (the sweep), and does not audit the month's deletion a second time."""
    url, root = fresh, tmp_path / "archive"
    name = _partition(-3)
    archived = _archive(url, root)
    assert archived.returncode == 0, archived.stderr
    path = root / f"{name}.jsonl.gz"
    kept = path.read_bytes()
    deleted = _archive(url, root, retention="1mo")
    assert deleted.returncode == 0, deleted.stderr
    assert not path.exists()

    path.write_bytes(kept)
    swept = _archive(url, root, retention="1mo")
    assert swept.returncode == 0, swept.stderr
    assert swept.stderr == ""
    assert swept.stdout == (
        f"deleted the file of {name}, which an earlier run left (marked deleted then)\n"
    )
    assert not path.exists()
    assert _events(url, "audit-archive-deleted", name) == 1


def test_an_object_store_that_refuses_the_archive_is_one_line_and_the_month_stays(shared, tmp_path):
    """Failure: the media bucket named in the settings does not exist (a typo, or it was
    removed). The archive cannot be written: one line naming the object and what the store said,
    exit 2, no traceback; the month stays in the database, nothing is in the catalog and no
    ``audit-archived`` event is written."""
    url = shared
    name = _partition(-3)
    store = ObjectStore(tmp_path)
    try:
        failed = _gateway(
            "audit", "archive", "--before", f"{_month(-2):%Y-%m-%d}", "--database-url", url,
            **CREDENTIALS, GATEWAY_MEDIA_STORE="s3", GATEWAY_MEDIA_S3_BUCKET="no-such-bucket",
            GATEWAY_MEDIA_S3_ENDPOINT_URL=store.url,
        )  # fmt: skip
    finally:
        store.stop()
    assert failed.returncode == 2
    assert failed.stdout == ""
    # One line: the object, and what the store said.
    assert failed.stderr == (
        f"gateway: archive: s3://no-such-bucket/audit-archive/{name}.jsonl.gz cannot be "
        f"written: NoSuchBucket: The specified bucket does not exist ({name} and the months "
        "after it stay in the database)\n"
    )
    assert name in _partitions(url)
    assert _catalog(url, name) is None
    assert _events(url, "audit-archived", name) == 0


def test_a_missing_archive_file_is_named_by_restore_and_by_verify(fresh, tmp_path):
    """Failure: an archived month's file is gone from its folder (deleted by hand, a volume not
    mounted). The restore names the file that is missing (exit 2), not a database error; verify
    --full names it as where the chain is broken (exit 1): the archived events cannot be
    checked."""
    url, root = fresh, tmp_path / "archive"
    name = _partition(-3)
    archived = _archive(url, root)
    assert archived.returncode == 0, archived.stderr
    path = (root / f"{name}.jsonl.gz").resolve()
    path.unlink()

    restored = _gateway(
        "audit", "restore", f"{_month(-3):%Y-%m}", "--database-url", url,
        "--archive-root", str(root), "--operator", "test-officer",
    )  # fmt: skip
    assert restored.returncode == 2
    assert restored.stdout == ""
    assert restored.stderr == f"gateway: restore: {path} is missing\n"
    assert _events(url, "audit-restored", name) == 0

    verified = _gateway(
        "audit", "verify", "--full", "--database-url", url, "--archive-root", str(root)
    )
    assert verified.returncode == 1
    assert verified.stdout == ""
    assert verified.stderr == (f"gateway: audit chain broken at archive {path} is missing\n")


def test_verify_goes_on_when_the_months_ahead_cannot_get_their_lock(shared):
    """Failure: another session holds a lock on the trail that adding a month (ATTACH
    PARTITION) waits for (a long maintenance, a migrate). The nightly verify does not wait for
    it nor fail: the months ahead are left for the next run (one warning line), the chains are
    verified (exit 0); the next run, the lock gone, makes them."""
    url = shared
    ahead = [_partition(offset) for offset in (4, 5, 6)]
    assert not set(ahead) & _partitions(url)

    async def held() -> Any:
        holder = await asyncpg.connect(url)
        try:
            async with holder.transaction():
                # Blocks ATTACH PARTITION (SHARE UPDATE EXCLUSIVE), not the readers (ACCESS
                # SHARE) nor the writers (ROW EXCLUSIVE).
                await holder.execute("lock table data.access_events in share update exclusive mode")
                return await asyncio.to_thread(
                    _gateway, "audit", "verify", "--months-ahead", "6", "--database-url", url
                )
        finally:
            await holder.close()

    verified = asyncio.run(held())
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == (
        "gateway: warning: the months ahead were not made (canceling statement due to lock "
        "timeout: another session holds a lock on data.access_events); the next run makes "
        "them\n"
    )
    assert verified.stdout.startswith("audit chain intact: "), verified.stdout
    assert not set(ahead) & _partitions(url)

    again = _gateway("audit", "verify", "--months-ahead", "6", "--database-url", url)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert set(ahead) <= _partitions(url)


def test_a_month_archived_before_a_refused_retention_is_reported(env, tmp_path):
    """Failure: the run archives (and drops) last month to this store, then finds a month past
    the retention in another store and refuses to delete it. The month it archived and dropped
    is still reported (stdout), then the refusal (exit 2): an operator is never left believing
    nothing changed."""
    made, _, server_url = _make_trail(env, tmp_path / "media", (-3, -2), PER_MONTH)
    url, first, other = made.admin_url, tmp_path / "first", tmp_path / "other"
    assert _archive(url, first).returncode == 0
    done = _gateway(
        "audit", "archive", "--before", f"{_month(-1):%Y-%m-%d}", "--database-url", url,
        "--archive-root", str(other), "--operator", "test-officer",
        GATEWAY_AUDIT_RETENTION="1mo",
    )  # fmt: skip
    name, last = _partition(-3), _partition(-2)
    assert done.returncode == 2
    archived, dropped = done.stdout.splitlines()
    assert archived.startswith(f"archived {last}: {PER_MONTH} events, ")
    assert archived.endswith(f"at {(other / f'{last}.jsonl.gz').resolve()}")
    assert dropped == f"dropped {last} from the database"
    assert done.stderr == (
        f"gateway: retention: past the retention but not in this store: {name} (at "
        f"{(first / f'{name}.jsonl.gz').resolve()}); nothing was deleted: run with the store "
        "they were archived to (--archive-root, or the settings of that time)\n"
    )
    try:
        assert _catalog(url, name)["deleted_at"] is None
    finally:
        asyncio.run(_drop(server_url, made.admin_url))


def test_an_archive_read_from_another_store_is_refused_naming_both(fresh, tmp_path):
    """Failure: restore and verify are given another store than the month was archived to (a
    new --archive-root, settings changed since). Reading a file of the same name there would
    check someone else's bytes against the catalog: both refuse, naming where the month was
    archived and where it would have been read."""
    url, first, other = fresh, tmp_path / "first", tmp_path / "other"
    name = _partition(-3)
    assert _archive(url, first).returncode == 0
    archived, there = (first / f"{name}.jsonl.gz").resolve(), (other / f"{name}.jsonl.gz").resolve()

    restored = _gateway(
        "audit", "restore", f"{_month(-3):%Y-%m}", "--database-url", url,
        "--archive-root", str(other), "--operator", "test-officer",
    )  # fmt: skip
    assert restored.returncode == 2
    assert restored.stderr == (
        f"gateway: restore: {name} is archived at {archived}, not in this store (it would be "
        f"read from {there}): run with the store it was archived to\n"
    )
    verified = _gateway(
        "audit", "verify", "--full", "--database-url", url, "--archive-root", str(other)
    )
    assert verified.returncode == 1
    assert verified.stderr == (
        f"gateway: audit chain broken at archive {archived}: not in this store (it would be "
        f"read from {there})\n"
    )
