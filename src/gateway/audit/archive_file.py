"""An archived month of the audit trail as a file: gzip-compressed JSON Lines that describe
themselves.

Line 1 is the header: the format and its version, the partition and its period, how many events,
the columns, the field sets the events name (so the groups' text, and so the hashes, can be
recomputed from the file alone) and, per chain, the runs of positions the file holds with the
hashes at their two edges (``prev_hash`` before the first, ``hash`` of the last). Then one line
per event, every column: times as ISO 8601 UTC to the microsecond, uuids as text, hashes as hex,
and ``objects``, ``detail`` and ``object_groups`` as the text PostgreSQL prints (the text the
hash covers). The last line is the trailer: the number of events again and the SHA-256 of the
header's line and of the event lines, uncompressed. Events are in order of chain and position:
chain 0 (the events before the chains) by ``seq``, then each chain by position; events older
than the chains that have no ``seq`` come first.

The catalog (``data.audit_archives``) holds the SHA-256 of the compressed file as stored; a file
whose bytes differ is refused before it is read.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

__all__ = [
    "COLUMNS",
    "FORMAT",
    "ArchiveError",
    "ArchiveReader",
    "ArchiveWriter",
    "Runs",
    "event_order",
]

FORMAT = "consultation-gateway/audit-archive"
VERSION = 1
COLUMNS = (
    "id",
    "occurred_at",
    "request_id",
    "kind",
    "issuer",
    "subject",
    "role",
    "actor_id",
    "patient_id",
    "detail",
    "client_id",
    "break_glass_reason",
    "objects",
    "seq",
    "prev_hash",
    "hash",
    "chain_id",
    "chain_seq",
    "object_groups",
    "object_ids",
    "object_sets",
    "object_counts",
)
_TEXT = {"request_id", "kind", "issuer", "subject", "role", "client_id", "break_glass_reason"}
_JSON_TEXT = {"detail", "objects", "object_groups"}  # kept as PostgreSQL prints them
_INTEGERS = {"id", "seq", "chain_id", "chain_seq"}


class ArchiveError(Exception):
    """The file is not an intact archive: what is wrong with it."""


def event_order(row: Any) -> tuple[int, int]:
    """Chain, then position: chain -1 for events without a seq (by id), 0 for the first chain."""
    if row["chain_id"] is not None:
        return (row["chain_id"], row["chain_seq"])
    if row["seq"] is not None:
        return (0, row["seq"])
    return (-1, row["id"])


def _encode(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "occurred_at":
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if name in ("prev_hash", "hash"):
        return bytes(value).hex()
    if name in ("actor_id", "patient_id"):
        return str(value)
    if name == "object_ids":
        return [str(item) for item in value]
    if name in ("object_sets", "object_counts"):
        return list(value)
    return value


_CHUNK = 1 << 20  # bytes of lines handed to the compressing thread at once
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_UUIDS = re.compile(r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12},)*")


def _uuids(ids: list[Any]) -> bool:
    """Each a uuid's text, lower case, as PostgreSQL prints it (a comma inside one is not)."""
    joined = ",".join(ids)  # TypeError for one that is not text
    return not ids or (len(joined) == 37 * len(ids) - 1 and bool(_UUIDS.fullmatch(joined + ",")))


def _decode(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "occurred_at":
        if not isinstance(value, str) or not _TIME.fullmatch(value):
            raise ValueError(f"not a time as archived: {value!r}")
        return datetime.fromisoformat(value)
    if name in ("prev_hash", "hash"):
        return bytes.fromhex(value)
    if name in ("actor_id", "patient_id"):
        return UUID(value)
    if name == "object_ids":  # kept as their text (as uuid[] prints it), checked: a month holds
        # tens of millions of them, and every reader takes the text (gateway.audit.chain.event_hash)
        if not isinstance(value, list) or not _uuids(value):
            raise ValueError("object_ids are not uuids as archived")
        return value
    return value


def _line(value: Any) -> bytes:
    return orjson.dumps(value) + b"\n"


class ArchiveWriter:
    """Writes the file to ``path`` as rows come (any number, in ``event_order``; ``objects``,
    ``detail`` and ``object_groups`` as text): the events first, to a part of their own, then
    the header, which needs their count and runs, is put before them. The file is three gzip
    members, header, events, trailer: one stream to any gzip reader.

    The events' lines are digested and compressed a megabyte at a time in a thread of their own
    (hashlib and zlib let go of the GIL), one chunk at a time and in order, while the next rows
    are encoded: writing a month costs about what the slower of the two costs, not both. Call
    ``close`` at the end, or ``discard`` on a failure."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self._events_path = path.with_name(path.name + ".events")
        # Level 4: on the bench's months 1.2 % larger than level 6 in 63 % of its time.
        self._events = gzip.open(self._events_path, "wb", compresslevel=4)  # noqa: SIM115
        self._digest = hashlib.sha256()
        self._runs = Runs()
        self.count = 0
        self._pending = bytearray()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="audit-archive-gzip")
        self._compressing: Future[None] | None = None

    def write(self, row: Any) -> None:
        self._pending += _line({name: _encode(name, row[name]) for name in COLUMNS})
        if len(self._pending) >= _CHUNK:
            self._hand_over()
        self._runs.add(row)
        self.count += 1

    def _hand_over(self) -> None:
        if self._compressing is not None:
            self._compressing.result()  # the chunk before (and its error, if it failed)
        chunk, self._pending = bytes(self._pending), bytearray()
        self._compressing = self._thread.submit(self._compress, chunk)

    def _compress(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self._events.write(chunk)

    def discard(self) -> None:
        """Stop after a failure (the caller removes the files)."""
        self._thread.shutdown(cancel_futures=True)
        with contextlib.suppress(OSError):  # the failure may have been the file's own
            self._events.close()

    def close(self) -> dict[str, Any]:
        """Finish the file; return its header."""
        try:
            self._hand_over()
            assert self._compressing is not None
            self._compressing.result()
            self._thread.shutdown()
            self._events.close()
        except BaseException:
            self.discard()
            raise
        header = {
            "format": FORMAT,
            "version": VERSION,
            **self.header,
            "events": self.count,
            "runs": self._runs.runs,
            "columns": list(COLUMNS),
        }
        head = _line(header)
        with open(self.path, "wb") as out:
            out.write(gzip.compress(head, mtime=0))
            with open(self._events_path, "rb") as events:
                shutil.copyfileobj(events, out, 1 << 20)
            trailer = {
                "end": True,
                "events": self.count,
                "header_sha256": hashlib.sha256(head).hexdigest(),
                "events_sha256": self._digest.hexdigest(),
            }
            out.write(gzip.compress(_line(trailer), mtime=0))
        self._events_path.unlink()
        return header


class Runs:
    """The runs of positions rows make, per chain, with the hashes at their edges (rows in
    ``event_order``)."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    def add(self, row: Any) -> None:
        chain, position = event_order(row)
        if chain < 0:
            return
        last = self.runs[-1] if self.runs else None
        if last is not None and last["chain"] == chain and last["last"] == position - 1:
            last["last"], last["hash"] = position, bytes(row["hash"]).hex()
        else:
            self.runs.append(
                {
                    "chain": chain,
                    "first": position,
                    "prev_hash": bytes(row["prev_hash"]).hex(),
                    "last": position,
                    "hash": bytes(row["hash"]).hex(),
                }
            )


def _parse(line: bytes, number: int) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ArchiveError(f"line {number} is not JSON") from None


class ArchiveReader:
    """Reads a file as it streams: ``header`` at once, then ``events()``, which raises
    ``ArchiveError`` where the file stops being whole (at its end for the count, the digests and
    a trailer cut off)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._source = gzip.open(path, "rb")  # noqa: SIM115 (closed by events())
        self._number = 1
        try:
            first = self._source.readline()
        except (OSError, EOFError) as exc:
            raise ArchiveError(f"not a gzip file ({exc})") from None
        value = _parse(first, 1) if first else None
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise ArchiveError("no archive header")
        if value.get("version") != VERSION or value.get("columns") != list(COLUMNS):
            raise ArchiveError(f"archive version {value.get('version')} is not known")
        self.header: dict[str, Any] = value
        self._header_sha256 = hashlib.sha256(first).hexdigest()

    def events(self) -> Iterator[dict[str, Any]]:
        digest = hashlib.sha256()
        count = 0
        trailer: Any = None
        try:
            for line in self._source:
                self._number += 1
                if trailer is not None:
                    raise ArchiveError(f"line {self._number} follows the trailer")
                value = _parse(line, self._number)
                if isinstance(value, dict) and value.get("end") is True:
                    trailer = value
                    continue
                if not isinstance(value, dict) or set(value) != set(COLUMNS):
                    raise ArchiveError(f"line {self._number} is not an event")
                try:
                    event = {name: _decode(name, value[name]) for name in COLUMNS}
                except (TypeError, ValueError) as exc:
                    raise ArchiveError(
                        f"line {self._number} holds a malformed value ({exc})"
                    ) from None
                digest.update(line)
                count += 1
                yield event
        except (OSError, EOFError) as exc:
            raise ArchiveError(f"the file is damaged or cut short ({exc})") from None
        finally:
            self._source.close()
        if trailer is None:
            raise ArchiveError("no trailer: the file was cut short")
        if trailer.get("events") != count or self.header.get("events") != count:
            raise ArchiveError(f"holds {count} events, not the {self.header.get('events')} it says")
        if (
            trailer.get("events_sha256") != digest.hexdigest()
            or trailer.get("header_sha256") != self._header_sha256
        ):
            raise ArchiveError("its lines do not match its own digests")
