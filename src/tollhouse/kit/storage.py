"""Object storage for generated media: local files, or an S3-compatible bucket (S3, R2, MinIO).

Keys are relative paths such as `scenes/ab12/image.png`: segments of letters, digits, `.`, `_`
and `-`, none empty and none starting with a dot (so no `..`, no hidden files, and no clash with
the file backend's own sidecars and temp files). Anything else is a ValueError, in both
backends, so a key that works in development works in production too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from tollhouse.config import Settings

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_KEY_LENGTH = 512
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    content_type: str


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> StoredObject | None: ...

    async def delete(self, key: str) -> None:
        """Removes the object; a missing one is not an error."""

    async def close(self) -> None: ...


def validate_key(key: str) -> str:
    """`key` itself, or ValueError when it is not a safe relative path."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"storage key must be 1-{MAX_KEY_LENGTH} characters")
    if not all(_SEGMENT.fullmatch(segment) for segment in key.split("/")):
        raise ValueError(f"storage key not allowed: {key!r}")
    return key


class FileStorage:
    """Files under `root`. The content type lives in a sidecar `.<name>.meta` JSON file next
    to the data (keys cannot start a segment with a dot, so sidecars never collide with keys).

    Both files are written to a temp file and renamed into place, sidecar first, so a reader
    sees either the old or the new object, never a partial file.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, key: str) -> tuple[Path, Path]:
        data = self.root / validate_key(key)
        return data, data.with_name(f".{data.name}.meta")

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path, meta = self._paths(key)
        sidecar = json.dumps({"content_type": content_type}).encode()
        await asyncio.to_thread(self._put_sync, path, meta, data, sidecar)

    @staticmethod
    def _put_sync(path: Path, meta: Path, data: bytes, sidecar: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(meta, sidecar)
        _write_atomically(path, data)

    async def get(self, key: str) -> StoredObject | None:
        return await asyncio.to_thread(self._get_sync, *self._paths(key))

    @staticmethod
    def _get_sync(path: Path, meta: Path) -> StoredObject | None:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        try:
            content_type = str(json.loads(meta.read_bytes())["content_type"])
        except (OSError, ValueError, KeyError, TypeError):
            content_type = DEFAULT_CONTENT_TYPE
        return StoredObject(data, content_type)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete_sync, *self._paths(key))

    @staticmethod
    def _delete_sync(path: Path, meta: Path) -> None:
        # Data first: once it is gone the object is gone, whatever happens to the sidecar.
        for file in (path, meta):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
                file.unlink()

    async def close(self) -> None:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    # The temp file sits in the target directory so os.replace stays a same-filesystem rename;
    # its dot-name cannot be a key.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class S3Storage:
    """An S3-compatible bucket through boto3. boto3 blocks, so every call runs in a worker
    thread; its client is thread-safe and created once. `key_prefix` (e.g. `media`) puts every
    object under `<prefix>/`."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        key_prefix: str = "",
    ) -> None:
        self.bucket = bucket
        prefix = key_prefix.strip("/")
        self.key_prefix = f"{prefix}/" if prefix else ""
        # Path-style addressing: R2, MinIO and local peers do not all serve bucket subdomains.
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def _key(self, key: str) -> str:
        return self.key_prefix + validate_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
        )

    async def get(self, key: str) -> StoredObject | None:
        return await asyncio.to_thread(self._get_sync, self._key(key))

    def _get_sync(self, key: str) -> StoredObject | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        with response["Body"] as body:
            data = body.read()
        return StoredObject(data, response.get("ContentType") or DEFAULT_CONTENT_TYPE)

    async def delete(self, key: str) -> None:
        # S3 answers 204 for a missing key too.
        await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


def storage_from_settings(settings: Settings) -> Storage:
    """The bucket when S3_BUCKET is set, else files under `<data dir>/media`."""
    if not settings.s3_bucket:
        return FileStorage(settings.tollhouse_data_dir / "media")
    secret = settings.s3_secret_access_key
    return S3Storage(
        settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        key_prefix=settings.s3_key_prefix,
    )
