"""The audit trail across months (issue 26): partitions, archive, retention, restore, and
verification across the archive's edge.

A database of its own (archiving drops months the other tests' trail does not have), real events
written through the gateway, and four earlier months of copies of them (``append_history``):
the oldest months are archived to a folder by the real ``gateway audit archive``; the whole
trail is then verified across the edge (``--full`` reads the archives), and one patient's
complete history, archived and live, is exported with nothing lost or duplicated. A tampered
archive is named by verify, which exits 1.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway import create_app
from tests.conftest import _prepare
from tests.support.audit_history import append_history
from tests.support.backup_restore import CREDENTIALS, ObjectStore
from tests.support.gateway_process import run_gateway
from tests.support.server import GraphQLClient, serving

CONSULTATIONS = "{ consultations { edges { node { id } } } }"
PER_MONTH = 120


def _month(offset: int) -> datetime:
    """The start of the month ``offset`` months from this one (UTC)."""
    now = datetime.now(UTC)
    total = now.year * 12 + now.month - 1 + offset
    return datetime(total // 12, total % 12 + 1, 1, tzinfo=UTC)


def _sql(url: str, work: Any) -> Any:
    async def go() -> Any:
        connection = await asyncpg.connect(url)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(go())


def _gateway(*args: str, **environ: str) -> Any:
    return run_gateway(*args, env=environ)


def _make_trail(env, media: Path, offsets: tuple[int, ...], per_month: int) -> Any:
    """A database of its own with real events of this month and ``per_month`` copies of them in
    each month ``offsets`` from this one: (environment, expected events by id, server URL)."""
    server_url = env.admin_url.rsplit("/", 1)[0] + "/postgres"
    made = asyncio.run(_prepare(server_url, env.identity, media))
    with serving(create_app(made.settings())) as server:
        client = GraphQLClient(server.url)
        for subject, _ in made.patients()[:3]:
            client.execute(CONSULTATIONS, made.token(subject))

    async def build(connection: asyncpg.Connection) -> dict[int, dict[str, Any]]:
        templates = await connection.fetch(
            "select patient_id, request_id, kind, issuer, subject, role, actor_id, client_id, "
            "break_glass_reason, objects::text as objects, detail::text as detail, "
            "object_groups::text as object_groups, object_sets, object_counts, object_ids "
            "from data.access_events where kind = 'disclosure'"
        )
        assert templates
        owner = await connection.fetchval(
            "select nspowner::regrole::text from pg_namespace where nspname = 'data'"
        )
        await connection.execute(f"set role {owner}")  # the months are the owner's, as migrate's
        for offset in offsets:
            await connection.execute(
                f"create table if not exists audit_partitions.access_events_{_month(offset):%Y_%m}"
                f" partition of data.access_events for values from "
                f"('{_month(offset).isoformat()}') to ('{_month(offset + 1).isoformat()}')"
            )
        await connection.execute("reset role")
        patients = [patient for _, patient in made.patients()]
        months = [_month(offset) for offset in offsets]
        await append_history(connection, templates, months, per_month, patients)
        rows = await connection.fetch("select id, seq, patient_id, hash from data.access_events")
        return {row["id"]: dict(row) for row in rows}

    return made, _sql(made.admin_url, build), server_url


@pytest.fixture(scope="module")
def trail(env, tmp_path_factory):
    """(environment, archive folder, expected events by id): a trail of four past months of
    copies and this month's real events."""
    made, expected, server_url = _make_trail(
        env, Path(tmp_path_factory.mktemp("archive-media")), (-4, -3, -2, -1), PER_MONTH
    )
    yield made, Path(tmp_path_factory.mktemp("audit-archive")), expected
    asyncio.run(_drop(server_url, made.admin_url))


async def _drop(server_url: str, database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


def _months_in_database(url: str) -> list[str]:
    return _sql(
        url,
        lambda c: c.fetch(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "where i.inhparent = 'data.access_events'::regclass order by c.relname"
        ),
    )


@pytest.fixture(scope="module")
def archived(trail):
    """The trail verified once (checkpoints recorded), then its two oldest months archived:
    (the first verify, the archive command's result)."""
    env, folder, _ = trail
    first = _gateway("audit", "verify", "--database-url", env.admin_url)
    done = _gateway(
        "audit", "archive", "--before", f"{_month(-2):%Y-%m-%d}", "--database-url",
        env.admin_url, "--archive-root", str(folder), "--operator", "test-officer",
    )  # fmt: skip
    return first, done


def test_archive_verify_across_the_edge_and_one_patients_whole_history(trail, archived):
    env, folder, expected = trail
    url, root = env.admin_url, str(folder)
    total = len(expected)
    assert total >= 4 * PER_MONTH

    # Verified from the start (no checkpoint yet): every event, and checkpoints recorded.
    first, archived = archived
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"audit chain intact: {total} events (since the last ")

    # The two oldest months archived; those after them stay.
    oldest, second = _month(-4), _month(-3)
    assert archived.returncode == 0, archived.stderr
    lines = archived.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"archived access_events_{oldest:%Y_%m}",
        f"archived access_events_{second:%Y_%m}",
        f"dropped access_events_{oldest:%Y_%m} from the database",
        f"dropped access_events_{second:%Y_%m} from the database",
    ]
    assert all(f" {PER_MONTH} events, " in line for line in lines[:2])
    names = {p.name for p in folder.iterdir()}
    assert names == {f"access_events_{m:%Y_%m}.jsonl.gz" for m in (oldest, second)}
    months = [row[0] for row in _months_in_database(url)]
    assert f"access_events_{oldest:%Y_%m}" not in months
    assert f"access_events_{_month(-2):%Y_%m}" in months

    # The archive is written down, and audited.
    catalog = _sql(
        url,
        lambda c: c.fetch(
            "select partition_name, location, events, sha256 from data.audit_archives "
            "order by period_start"
        ),
    )
    assert [(row["partition_name"], row["events"]) for row in catalog] == [
        (f"access_events_{oldest:%Y_%m}", PER_MONTH),
        (f"access_events_{second:%Y_%m}", PER_MONTH),
    ]
    assert catalog[0]["location"] == str((folder / min(names)).resolve())
    recorded = _sql(
        url,
        lambda c: c.fetch(
            "select subject, detail from data.access_events where kind = 'audit-archived' "
            "order by seq"
        ),
    )
    assert [json.loads(row["detail"])["partition"] for row in recorded] == [
        row["partition_name"] for row in catalog
    ]
    assert {row["subject"] for row in recorded} == {"test-officer"}

    # Across the edge: the incremental verify from its checkpoints, and --full from the start
    # with the archives read from their files.
    since = _gateway("audit", "verify", "--database-url", url)
    assert since.returncode == 0, since.stderr
    assert since.stdout.startswith("audit chain intact: 2 events (since the last checkpoint")
    full = _gateway("audit", "verify", "--full", "--database-url", url, "--archive-root", root)
    assert full.returncode == 0, full.stderr
    assert full.stdout.startswith(f"audit chain intact: {total + 2} events (everything")

    # One patient's whole history, archived and live: every event once, nothing else.
    patient = env.patients()[0][1]
    exported = _gateway(
        "audit", "export", "--since", "2000-01-01", "--patient", str(patient),
        "--database-url", url, "--archive-root", root,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    seqs = Counter(int(json.loads(line)["id"]) for line in exported.stdout.splitlines())
    theirs = Counter(e["seq"] for e in expected.values() if e["patient_id"] == patient)
    assert seqs == theirs and max(seqs.values()) == 1
    assert sum(1 for e in expected.values() if e["patient_id"] == patient) > 10
    archived_part = sum(
        1
        for e in expected.values()
        if e["patient_id"] == patient and e["id"] in _archived_ids(folder)
    )
    assert archived_part > 0
    for row in catalog:
        assert f"{row['partition_name']}: archived at {row['location']}; " in exported.stderr, (
            exported.stderr
        )


def _archived_ids(folder: Path) -> set[int]:
    ids = set()
    for path in folder.glob("*.jsonl.gz"):
        with gzip.open(path, "rt") as source:
            for line in source:
                value = json.loads(line)
                if "request_id" in value:
                    ids.add(value["id"])
    return ids


def test_verify_names_a_tampered_archive_and_exits_1(trail, archived):
    """Attack: someone with the bucket's keys rewrites an archived event (its subject) in the
    file. The file's bytes no longer match the digest the catalog recorded when it was archived:
    --full names the file and exits 1; with the file put back it passes."""
    env, folder, _ = trail
    url, root = env.admin_url, str(folder)
    path = sorted(folder.glob("*.jsonl.gz"))[0]
    original = path.read_bytes()
    text = gzip.decompress(original).decode()
    lines = text.splitlines(keepends=True)
    event = json.loads(lines[1])
    lines[1] = lines[1].replace(json.dumps(event["subject"]), json.dumps("someone-else"), 1)
    path.write_bytes(gzip.compress("".join(lines).encode()))
    try:
        broken = _gateway(
            "audit", "verify", "--full", "--database-url", url, "--archive-root", root
        )
    finally:
        path.write_bytes(original)
    assert broken.returncode == 1
    assert broken.stderr == (
        f"gateway: audit chain broken at archive {path.resolve()}: "
        "its bytes differ from those archived (digest)\n"
    )
    again = _gateway("audit", "verify", "--full", "--database-url", url, "--archive-root", root)
    assert again.returncode == 0, again.stderr


def test_a_month_is_restored_for_the_auditor_then_deleted_past_retention(trail, archived):
    """A restore loads a checked archive for the auditors' queries, audited; then archives past
    the retention are deleted (files and catalog marks), audited, and the chains still verify
    from the start across what is gone."""
    env, folder, expected = trail
    url, root = env.admin_url, str(folder)
    month = f"{_month(-4):%Y-%m}"
    restored = _gateway(
        "audit", "restore", month, "--database-url", url, "--archive-root", root,
        "--operator", "test-officer",
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout == (
        f"restored {PER_MONTH} events of {month} into data.restored_access_events\n"
    )
    rows = _sql(url, lambda c: c.fetch("select id, seq, hash from data.restored_access_events"))
    assert len(rows) == PER_MONTH
    for row in rows:
        assert expected[row["id"]]["hash"] == row["hash"]
    kinds = _sql(
        url,
        lambda c: c.fetchval(
            "select count(*) from data.access_events where kind = 'audit-restored'"
        ),
    )
    assert kinds == 1
    missing = _gateway("audit", "restore", "1999-01", "--database-url", url, "--archive-root", root)
    assert missing.returncode == 2
    assert missing.stderr == "gateway: access_events_1999_01 is not archived\n"

    done = _gateway(
        "audit", "archive", "--before", f"{_month(-1):%Y-%m-%d}", "--database-url", url,
        "--archive-root", root, "--operator", "test-officer", GATEWAY_AUDIT_RETENTION="2mo",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        *[
            line
            for line in done.stdout.splitlines()
            if line.startswith(f"archived access_events_{_month(-2):%Y_%m}: ")
        ],
        f"dropped access_events_{_month(-2):%Y_%m} from the database",
        f"deleted access_events_{_month(-4):%Y_%m}: past the retention of 2 months",
        f"deleted access_events_{_month(-3):%Y_%m}: past the retention of 2 months",
    ]
    assert sorted(p.name for p in folder.glob("*.jsonl.gz")) == [
        f"access_events_{_month(-2):%Y_%m}.jsonl.gz"
    ]
    deletions = _sql(
        url,
        lambda c: c.fetchval(
            "select count(*) from data.access_events where kind = 'audit-archive-deleted'"
        ),
    )
    assert deletions == 2
    # the month restored above went with its archive
    left = _sql(url, lambda c: c.fetchval("select count(*) from data.restored_access_events"))
    assert left == 0
    full = _gateway("audit", "verify", "--full", "--database-url", url, "--archive-root", root)
    assert full.returncode == 0, full.stderr
    exported = _gateway(
        "audit", "export", "--since", "2000-01-01", "--database-url", url, "--archive-root", root
    )
    assert exported.returncode == 0, exported.stderr
    assert f"access_events_{_month(-4):%Y_%m}: deleted on " in exported.stderr


def test_a_month_still_being_written_is_not_archived(trail):
    env, folder, _ = trail
    refused = _gateway(
        "audit", "archive", "--before", f"{_month(1):%Y-%m-%d}", "--database-url",
        env.admin_url, "--archive-root", str(folder),
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gateway: --before {_month(1):%Y-%m-%d} is after the start of this month "
        f"({_month(0):%Y-%m-%d}, by the database's clock): a month is archived once it has "
        "ended\n"
    )


def test_the_archive_goes_to_the_media_object_store_and_verifies_from_there(env, tmp_path):
    """With GATEWAY_MEDIA_STORE=s3 (an S3-compatible server: moto's), a month is archived to the
    media bucket under audit-archive/, verify --full reads it from there, and an object
    rewritten in the bucket is named by its s3:// address (exit 1)."""
    made, expected, server_url = _make_trail(env, tmp_path / "media", (-2,), 30)
    store = ObjectStore(tmp_path)
    try:
        store.client().create_bucket(Bucket="media")
        s3 = {
            **CREDENTIALS,
            "GATEWAY_MEDIA_STORE": "s3",
            "GATEWAY_MEDIA_S3_BUCKET": "media",
            "GATEWAY_MEDIA_S3_ENDPOINT_URL": store.url,
        }
        url = made.admin_url
        name = f"access_events_{_month(-2):%Y_%m}"
        done = _gateway(
            "audit", "archive", "--before", f"{_month(-1):%Y-%m-%d}", "--database-url", url,
            **s3,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        archived, dropped = done.stdout.splitlines()
        assert archived.startswith(f"archived {name}: 30 events, ")
        assert archived.endswith(f"at s3://media/audit-archive/{name}.jsonl.gz")
        assert dropped == f"dropped {name} from the database"
        key = f"audit-archive/{name}.jsonl.gz"
        assert key in [
            item["Key"] for item in store.client().list_objects_v2(Bucket="media")["Contents"]
        ]
        full = _gateway("audit", "verify", "--full", "--database-url", url, **s3)
        assert full.returncode == 0, full.stderr
        assert full.stdout.startswith(f"audit chain intact: {len(expected) + 1} events")
        original = store.client().get_object(Bucket="media", Key=key)["Body"].read()
        store.client().put_object(Bucket="media", Key=key, Body=original[:-40])
        broken = _gateway("audit", "verify", "--full", "--database-url", url, **s3)
        assert broken.returncode == 1
        assert broken.stderr == (
            f"gateway: audit chain broken at archive s3://media/{key}: "
            "its bytes differ from those archived (digest)\n"
        )
    finally:
        store.stop()
        asyncio.run(_drop(server_url, made.admin_url))
