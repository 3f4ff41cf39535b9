"""The archive file alone (gateway.audit.archive_file): what the writer writes reads back the
same and checks whole, and a file changed by hand is refused naming the line and what is wrong,
even when the changer recomputed the file's own digests. No database: the rows are made here,
hashed by gateway.audit.chain.event_hash as the database hashes them (the suites of
test_audit_archive*.py hold the two to each other on real months)."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.archive import _check_file
from gateway.audit.archive_file import COLUMNS, ArchiveReader, ArchiveWriter
from gateway.audit.chain import chain_genesis, event_hash

START = datetime(2026, 3, 1, tzinfo=UTC)


def _rows(count: int, ids_per_event: int = 40) -> list[dict[str, Any]]:
    """``count`` events of chain 3, positions 1.., each naming ``ids_per_event`` objects in one
    group (0016's form: the groups as text), hashed in turn."""
    prev, rows = chain_genesis(3), []
    for position in range(1, count + 1):
        object_ids = [uuid.uuid4() for _ in range(ids_per_event)]
        row: dict[str, Any] = {
            "id": 1000 + position,
            "occurred_at": START + timedelta(seconds=position, microseconds=position),
            "request_id": f"req-{position}",
            "kind": "disclosure",
            "issuer": "https://id.example",
            "subject": f"patient-{position % 7}",
            "role": "patient",
            "actor_id": uuid.uuid4(),
            "patient_id": uuid.uuid4(),
            "detail": '{"operation": "Q2"}',
            "client_id": None,
            "break_glass_reason": None,
            "objects": "[]",
            "seq": 5000 + position,
            "prev_hash": prev,
            "chain_id": 3,
            "chain_seq": position,
            "object_groups": json.dumps([["Consultation", ["id", "notes"], ids_per_event]]),
            "object_ids": object_ids,
            "object_sets": None,
            "object_counts": None,
        }
        row["hash"] = prev = event_hash(prev, row)
        rows.append(row)
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    writer = ArchiveWriter(path, {"partition": "access_events_2026_03", "field_sets": {}})
    for row in rows:
        writer.write(row)
    return writer.close()


def _rewrite(
    path: Path, change: Any, *, digests: bool = True, separators: tuple[str, str] = (",", ":")
) -> None:
    """Change the file's event lines (``change`` of their parsed values, in place) and write it
    again, its trailer's digest of the events recomputed when ``digests``."""
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    events = [json.loads(line) for line in lines[1:-1]]
    change(events)
    body = [
        json.dumps(event, ensure_ascii=False, separators=separators).encode() + b"\n"
        for event in events
    ]
    trailer = json.loads(lines[-1])
    if digests:
        trailer["events_sha256"] = hashlib.sha256(b"".join(body)).hexdigest()
    path.write_bytes(
        gzip.compress(lines[0] + b"".join(body) + json.dumps(trailer).encode() + b"\n")
    )


def test_a_month_written_reads_back_the_same_and_checks_whole(tmp_path):
    """More than a chunk of lines (the compressing thread's unit, a megabyte): every event
    comes back with every column, the ids as their canonical text, and the file checks whole
    (hashes recomputed from that text equal those made from the uuids)."""
    rows = _rows(1000)
    path = tmp_path / "m.jsonl.gz"
    header = _write(path, rows)
    assert len(gzip.decompress(path.read_bytes())) > 2 * (1 << 20)
    assert header["events"] == 1000
    assert header["runs"] == [
        {
            "chain": 3,
            "first": 1,
            "prev_hash": chain_genesis(3).hex(),
            "last": 1000,
            "hash": rows[-1]["hash"].hex(),
        }
    ]
    back = list(ArchiveReader(path).events())
    assert [set(event) for event in back] == [set(COLUMNS)] * 1000
    for event, row in zip(back, rows, strict=True):
        assert event == {**row, "object_ids": [str(i) for i in row["object_ids"]]}
    assert _check_file(path, header["runs"], header["events"]) is None


def test_an_empty_month_writes_a_whole_file(tmp_path):
    path = tmp_path / "empty.jsonl.gz"
    header = _write(path, [])
    assert header["events"] == 0 and header["runs"] == []
    assert list(ArchiveReader(path).events()) == []


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            lambda events: events[1].update(
                object_ids=[i.upper() for i in events[1]["object_ids"]]
            ),
            "line 3 holds a malformed value (object_ids are not uuids as archived)",
        ),
        (
            lambda events: events[1]["object_ids"].__setitem__(0, "not-a-uuid"),
            "line 3 holds a malformed value (object_ids are not uuids as archived)",
        ),
        (
            lambda events: events[1].update(
                object_ids=[",".join(events[1]["object_ids"][:2]), *events[1]["object_ids"][2:]]
            ),
            "line 3 holds a malformed value (object_ids are not uuids as archived)",
        ),
        (
            lambda events: events[1].update(object_ids=[7]),
            "line 3 holds a malformed value (sequence item 0: expected str instance, int found)",
        ),
        (
            lambda events: events[0].update(occurred_at="2026-03-01 00:00:01+00"),
            "line 2 holds a malformed value (not a time as archived: '2026-03-01 00:00:01+00')",
        ),
        (
            lambda events: events[2].update(occurred_at="2026-03-01T00:00:03Z"),
            "line 4 holds a malformed value (not a time as archived: '2026-03-01T00:00:03Z')",
        ),
    ],
    ids=[
        "ids-uppercase",
        "id-not-uuid",
        "two-ids-in-one",
        "id-not-text",
        "time-other-format",
        "time-no-micros",
    ],
)
def test_a_value_not_as_archived_is_refused_naming_its_line(tmp_path, change, refusal):
    """Attack: the file rewritten with a value in another form (the same uuid in capitals, a
    time without its microseconds), its own digests recomputed. Expected: refused, naming the
    line, before any hash is taken of it."""
    rows = _rows(5)
    path = tmp_path / "m.jsonl.gz"
    header = _write(path, rows)
    _rewrite(path, change)
    assert _check_file(path, header["runs"], header["events"]) == refusal


def test_an_object_id_swapped_is_an_altered_event(tmp_path):
    """Attack: one event's object id replaced by another patient's (a canonical uuid), the
    file's digests recomputed. Expected: the event's hash no longer matches its contents."""
    rows = _rows(5)
    path = tmp_path / "m.jsonl.gz"
    header = _write(path, rows)
    _rewrite(path, lambda events: events[3]["object_ids"].__setitem__(7, str(uuid.uuid4())))
    assert _check_file(path, header["runs"], header["events"]) == (
        f"chain 3 position 4 (event id {rows[3]['id']}): contents were altered"
    )


def test_lines_that_differ_from_their_digests_are_refused(tmp_path):
    """Attack: the events' lines written again (the same values, spaced otherwise), the trailer
    left as it was. Expected: every event checks, and the file is refused at its end."""
    rows = _rows(5)
    path = tmp_path / "m.jsonl.gz"
    header = _write(path, rows)
    _rewrite(path, lambda events: None, digests=False, separators=(", ", ": "))
    assert _check_file(path, header["runs"], header["events"]) == (
        "its lines do not match its own digests"
    )
    _rewrite(path, lambda events: None, separators=(", ", ": "))  # its digest made anew
    assert _check_file(path, header["runs"], header["events"]) is None
