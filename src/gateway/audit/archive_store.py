"""Where archived months of the audit trail are kept: a folder, or the media object store.

``GATEWAY_AUDIT_ARCHIVE_ROOT`` names a folder (development, or a mounted volume); without it, and
with ``GATEWAY_MEDIA_STORE=s3``, the archives go to the media bucket under ``audit-archive/``
(the ``s3`` extra). Each file is named after its month; archiving a month again (after a run that
failed before its commit) writes the file again. One archive of a month runs at a time (an
advisory lock in ``gateway.audit.archive``). A file missing, or the store failing, is an
``ArchiveError`` naming the file and what the store said.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from gateway.audit.archive_file import ArchiveError
from gateway.errors import ConfigurationError

__all__ = ["ArchiveStore", "FolderStore", "MissingArchive", "S3Store", "archive_store"]

PREFIX = "audit-archive/"


class MissingArchive(ArchiveError):
    """The store has no such file."""


class ArchiveStore(Protocol):
    def location(self, name: str) -> str: ...
    def put(self, name: str, source: Path) -> None: ...
    def fetch(self, name: str, target: Path) -> None: ...
    def delete(self, name: str) -> bool:
        """Delete the file if it is there; whether it was."""
        ...


class FolderStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def location(self, name: str) -> str:
        return str((self.root / name).resolve())

    def put(self, name: str, source: Path) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            partial = self.root / f".{name}.partial"
            shutil.copyfile(source, partial)
            partial.replace(self.root / name)
        except OSError as exc:
            raise ArchiveError(
                f"{self.location(name)} cannot be written: {exc.strerror or exc}"
            ) from None

    def fetch(self, name: str, target: Path) -> None:
        try:
            shutil.copyfile(self.root / name, target)
        except FileNotFoundError:
            raise MissingArchive(f"{self.location(name)} is missing") from None
        except OSError as exc:
            raise ArchiveError(f"{self.location(name)}: {exc.strerror or exc}") from None

    def delete(self, name: str) -> bool:
        try:
            (self.root / name).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ArchiveError(f"{self.location(name)} cannot be deleted: {exc.strerror}") from None
        return True


class S3Store:
    """An S3-compatible bucket through boto3 (``pip install consultation-gateway[s3]``)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = PREFIX,
    ) -> None:
        try:
            import boto3
        except ImportError:  # pragma: no cover - the extra is installed where s3 is configured
            raise ConfigurationError(
                "the audit archive in S3 needs boto3: pip install 'consultation-gateway[s3]'"
            ) from None
        self.bucket, self.prefix = bucket, prefix
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def location(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def put(self, name: str, source: Path) -> None:
        with self._failing(name, "cannot be written"):
            self.client.upload_file(str(source), self.bucket, self.prefix + name)

    def fetch(self, name: str, target: Path) -> None:
        with self._failing(name, "cannot be read"):
            self.client.download_file(self.bucket, self.prefix + name, str(target))

    def delete(self, name: str) -> bool:
        try:
            with self._failing(name, "cannot be deleted"):
                self.client.head_object(Bucket=self.bucket, Key=self.prefix + name)
        except MissingArchive:
            return False
        with self._failing(name, "cannot be deleted"):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + name)
        return True

    @contextmanager
    def _failing(self, name: str, what: str) -> Iterator[None]:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in ("404", "NoSuchKey"):
                raise MissingArchive(f"{self.location(name)} is missing") from None
            raise ArchiveError(
                f"{self.location(name)} {what}: {error.get('Code')}: {error.get('Message', '')}"
            ) from None
        except (BotoCoreError, Boto3Error) as exc:
            cause = exc.__context__  # boto3's transfer errors wrap the store's answer
            if isinstance(cause, ClientError):
                error = cause.response.get("Error", {})
                raise ArchiveError(
                    f"{self.location(name)} {what}: {error.get('Code')}: {error.get('Message', '')}"
                ) from None
            raise ArchiveError(f"{self.location(name)} {what}: {exc}") from None


def archive_store(settings: Any) -> ArchiveStore:
    """The store the settings name (``Settings``, or ``load_settings_of`` those fields)."""
    if settings.audit_archive_root is not None:
        return FolderStore(settings.audit_archive_root)
    if settings.media_store == "s3" and settings.media_s3_bucket:
        return S3Store(
            settings.media_s3_bucket,
            endpoint_url=settings.media_s3_endpoint_url,
            region=settings.media_s3_region,
        )
    raise ConfigurationError(
        "the audit archive needs a place: set GATEWAY_AUDIT_ARCHIVE_ROOT (a folder), or "
        "GATEWAY_MEDIA_STORE=s3 with GATEWAY_MEDIA_S3_BUCKET"
    )
