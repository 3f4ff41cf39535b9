"""Where recordings' media live: a local folder (development) or object storage (production).

The media endpoint makes every check first; a store only turns an already-authorized storage key
into a response. The local store streams the file with HTTP Range support in fixed-size chunks,
never the whole file in memory; the S3 store answers with a redirect to a presigned URL that
expires in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from gateway.config import Settings
from gateway.errors import Code

__all__ = ["LocalMediaStore", "MediaStore", "S3MediaStore", "media_store"]

_NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


class MediaStore(Protocol):
    async def respond(self, key: str, content_type: str, request: Request) -> Response: ...


class _MediaFile(FileResponse):
    max_ranges = 16  # past this the Range header is ignored and the whole file sent (RFC 9110)


class LocalMediaStore:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def path_of(self, key: str) -> Path | None:
        path = (self._root / key).resolve()
        return path if path.is_relative_to(self._root) and path.is_file() else None

    async def respond(self, key: str, content_type: str, request: Request) -> Response:
        path = self.path_of(key)
        if path is None:
            return JSONResponse(
                {
                    "errors": [
                        {
                            "message": "Recording media not found",
                            "extensions": {"code": Code.NOT_FOUND},
                        }
                    ]
                },
                status_code=404,
                headers=_NO_STORE,
            )
        return _MediaFile(
            path, media_type=content_type, headers=_NO_STORE, content_disposition_type="inline"
        )


class S3MediaStore:
    """Object storage through boto3 (``pip install consultation-gateway[s3]``)."""

    def __init__(
        self,
        bucket: str,
        *,
        presign_seconds: int = 60,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                config=Config(signature_version="s3v4"),
            )
        self._client = client
        self._bucket = bucket
        self._presign_seconds = presign_seconds

    async def respond(self, key: str, content_type: str, request: Request) -> Response:
        url = self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseCacheControl": "no-store",
            },
            ExpiresIn=self._presign_seconds,
        )
        return RedirectResponse(url, status_code=307, headers=_NO_STORE)


def media_store(settings: Settings) -> MediaStore:
    """The store ``settings`` describe."""
    if settings.media_store == "s3":
        return S3MediaStore(
            settings.media_s3_bucket or "",
            presign_seconds=settings.media_presign_seconds,
            endpoint_url=settings.media_s3_endpoint_url,
            region=settings.media_s3_region,
        )
    assert settings.media_root is not None
    return LocalMediaStore(settings.media_root)
