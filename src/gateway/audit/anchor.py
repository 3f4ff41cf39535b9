"""The chains' heads kept outside the database: the anchor of ``gateway audit verify``.

Inside the database, a superuser (who can switch the trail's triggers off) or the trail's owner
can rewrite events, the chains' head rows and the checkpoints together, each hash recomputed:
nothing left in the database shows it. With an anchor (``GATEWAY_AUDIT_ANCHOR``: a folder, or
``s3://bucket/prefix``), verify reads the heads the last verification found from there (not
from the database), starts each chain at them, and holds the events there to them (``--full``
walks to them from the start); once the trail verifies, it writes the heads it found, for the
next run. A rewrite of anything a verification saw then shows: the event after an anchored head
does not follow it, or (no event after it) the chain's head row differs from it, or (``--full``)
the event at the anchored position does. A trail restored from a backup older than the anchor
shows as events removed: the audit events lost with it.

The anchor is as safe as its store: writable by the verify job alone, its versions kept (S3
Versioning with Object Lock), so that an old anchor cannot be put back (docs/OPERATIONS.md).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.audit.archive_file import ArchiveError
from gateway.audit.archive_store import ArchiveStore, FolderStore, MissingArchive, S3Store
from gateway.audit.chain import Held, Tails
from gateway.errors import ConfigurationError

__all__ = ["Anchor", "anchor_store", "read_anchor", "write_anchor"]

FORMAT = "consultation-gateway/audit-anchor"
VERSION = 1
NAME = "anchor.json"


@dataclass(frozen=True, slots=True)
class Anchor:
    heads: Tails
    written_at: str
    location: str

    def held(self) -> Held:
        """The heads as checkpoints: the hash each position had, and where that is written."""
        label = f"anchored {self.written_at} at {self.location}"
        return {(chain, at): (digest, label) for chain, (at, digest) in self.heads.items()}


def anchor_store(where: str, settings: Any) -> ArchiveStore:
    """The store of ``where``: ``s3://bucket/prefix`` (the media store's endpoint and region,
    the ``s3`` extra), else a folder."""
    if where.startswith("s3://"):
        bucket, _, prefix = where.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigurationError(f"GATEWAY_AUDIT_ANCHOR {where!r} names no bucket")
        return S3Store(
            bucket,
            endpoint_url=settings.media_s3_endpoint_url,
            region=settings.media_s3_region,
            prefix=f"{prefix.strip('/')}/" if prefix.strip("/") else "",
        )
    return FolderStore(Path(where))


def read_anchor(store: ArchiveStore, *, first: bool = False) -> Anchor | None:
    """The anchor the last verification wrote; with ``first``, None where there is none yet
    (and refused where there is one). An anchor missing (but for the first), one that cannot be
    read, or one that is not an anchor is a ``ConfigurationError`` naming it: verify does not go
    on without it, so that removing the anchor does not start the trail's verification afresh."""
    location = store.location(NAME)
    with tempfile.TemporaryDirectory(prefix="gateway-audit-anchor-") as work:
        path = Path(work) / NAME
        try:
            store.fetch(NAME, path)
        except MissingArchive:
            if first:
                return None
            raise ConfigurationError(
                f"there is no audit anchor at {location}: the first verification against it "
                "writes it with --first-anchor; after that, a missing anchor was removed (put "
                "back the one the store's versions keep)"
            ) from None
        except ArchiveError as exc:
            raise ConfigurationError(f"the audit anchor cannot be read: {exc}") from None
        try:
            value = json.loads(path.read_bytes())
            if value["format"] != FORMAT or value["version"] != VERSION:
                raise ValueError(f"format {value['format']!r} version {value['version']!r}")
            heads = {
                int(head["chain"]): (int(head["position"]), bytes.fromhex(head["hash"]))
                for head in value["heads"]
            }
            written_at = str(value["written_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"{location} is not an audit anchor ({type(exc).__name__}: {exc}); it was "
                "written by no verification: put back the one the store's versions keep"
            ) from None
    if first:
        raise ConfigurationError(
            f"an audit anchor is already at {location} (written {written_at}): --first-anchor "
            "would start the trail's verification afresh"
        )
    return Anchor(heads, written_at, location)


def write_anchor(store: ArchiveStore, tails: Tails) -> str:
    """Write where each chain's verified walk ended (positions past 0) as the anchor; its
    location."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "written_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        "heads": [
            {"chain": chain, "position": position, "hash": digest.hex()}
            for chain, (position, digest) in sorted(tails.items())
            if position > 0
        ],
    }
    with tempfile.TemporaryDirectory(prefix="gateway-audit-anchor-") as work:
        path = Path(work) / NAME
        path.write_text(json.dumps(document, indent=1) + "\n")
        try:
            store.put(NAME, path)
        except ArchiveError as exc:
            raise ConfigurationError(f"the audit anchor cannot be written: {exc}") from None
    return store.location(NAME)
