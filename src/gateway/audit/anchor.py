"""The chains' heads kept outside the database: the anchor of ``gateway audit verify``.

Inside the database, a superuser (who can switch the trail's triggers off) or the trail's owner
can rewrite events, the chains' head rows and the checkpoints together, each hash recomputed:
nothing left in the database shows it. With an anchor (``GATEWAY_AUDIT_ANCHOR``: a folder, or
``s3://bucket/prefix``), verify reads the heads the last verification found from there (not
from the database), starts each chain at them (``--full`` walks to them from the start and holds
the event there to them), and requires each chain to reach them; once the trail verifies, it
writes the heads it found and the archive catalog it saw, for the next run. A rewrite of
anything a verification saw then shows: the event after an anchored head does not follow it, or
(no event after it) the chain's head row differs from it, or (``--full``) the event at the
anchored position does, or the chain ends before it. The catalog is held to the anchor's (no
anchored archive gone or changed, none deleted that no anchored run saw), and a month archived
since is checked from its file before the walk trusts its runs (``gateway.audit.archive.verify``).
A trail restored from a backup older than the anchor shows as events removed: the audit events
lost with it.

The anchor is as safe as its store: writable by the verify job alone, its versions kept (S3
Versioning with Object Lock), so that an old anchor cannot be put back (docs/OPERATIONS.md).
"""

from __future__ import annotations

import hashlib
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

__all__ = [
    "Anchor",
    "AnchorMissing",
    "anchor_store",
    "archive_identity",
    "read_anchor",
    "write_anchor",
]

FORMAT = "consultation-gateway/audit-anchor"
VERSION = 1
NAME = "anchor.json"


class AnchorMissing(ConfigurationError):
    """There is no anchor where it should be."""


def archive_identity(row: Any) -> str:
    """What the walk takes from a catalog row (``data.audit_archives``: its month, file digest,
    count and runs, which the walk trusts), as one digest."""
    value = [
        row["partition_name"],
        row["sha256"],
        row["period_start"].isoformat(),
        row["period_end"].isoformat(),
        row["events"],
        json.loads(row["runs"]),
    ]
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Anchor:
    heads: Tails
    archives: dict[str, tuple[str, bool]]
    """The archived months the anchored run saw: partition to (``archive_identity``, deleted)."""
    written_at: str
    location: str

    def held(self) -> Held:
        """The heads as checkpoints: the hash each position had, and where that is written."""
        label = f"anchored {self.written_at} at {self.location}"
        return {(chain, at): (digest, label) for chain, (at, digest) in self.heads.items()}

    def catalog(self, rows: list[Any]) -> tuple[str | None, list[Any]]:
        """The archive catalog (``data.audit_archives`` rows, with ``deleted``) against the
        anchor: what is wrong with it, and the months archived since (their files to be checked
        before the walk trusts their runs). An archive the anchor saw must still be there as it
        was (deleted since, at most); one it did not see cannot have been deleted already
        (retention deletes years-old archives, which every nightly run has seen): else a month's
        events were removed and its catalog row forged to cover the gap."""
        present: dict[str, Any] = {}
        for row in rows:
            if row["partition_name"] in present:
                return f"archive {row['partition_name']}: in the catalog twice", []
            present[row["partition_name"]] = row
        for name, (identity, deleted) in sorted(self.archives.items()):
            row = present.get(name)
            if row is None:
                return f"archive {name}: anchored, but no longer in the catalog", []
            if archive_identity(row) != identity or (deleted and not row["deleted"]):
                return f"archive {name}: its catalog row differs from the anchored one", []
        new = [row for name, row in sorted(present.items()) if name not in self.archives]
        for row in new:
            if row["deleted"]:
                return (
                    f"archive {row['partition_name']}: marked deleted, but no anchored "
                    "verification saw it archived",
                    [],
                )
        return None, new


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
            raise AnchorMissing(
                f"there is no audit anchor at {location}: the first verification against it "
                "writes it with --full --first-anchor; after that, a missing anchor was removed "
                "(put back the one the store's versions keep)"
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
            archives = {
                str(a["partition"]): (str(a["identity"]), bool(a["deleted"]))
                for a in value["archives"]
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
    return Anchor(heads, archives, written_at, location)


def write_anchor(store: ArchiveStore, tails: Tails, catalog: list[Any]) -> str:
    """Write where each chain's verified walk ended (positions past 0) and the archive catalog
    it saw as the anchor; its location. An anchor written meanwhile by a run that went further
    (a nightly run during a long ``--full``) keeps its further heads and the archives it saw."""
    heads = {chain: tail for chain, tail in tails.items() if tail[0] > 0}
    archives = {row["partition_name"]: (archive_identity(row), row["deleted"]) for row in catalog}
    try:
        meanwhile = read_anchor(store)
    except AnchorMissing:  # the first
        meanwhile = None
    if meanwhile is not None:
        for chain, tail in meanwhile.heads.items():
            if tail[0] > heads.get(chain, (0, b""))[0]:
                heads[chain] = tail
        archives = {**meanwhile.archives, **archives}
    document = {
        "format": FORMAT,
        "version": VERSION,
        "written_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        "heads": [
            {"chain": chain, "position": position, "hash": digest.hex()}
            for chain, (position, digest) in sorted(heads.items())
        ],
        "archives": [
            {"partition": name, "identity": identity, "deleted": deleted}
            for name, (identity, deleted) in sorted(archives.items())
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
