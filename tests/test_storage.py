"""Object storage: the file backend, and the S3 backend against a real moto server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from s3_peer import BUCKET, REGION, raw_client
from tollhouse.config import Settings
from tollhouse.kit.storage import (
    FileStorage,
    S3Storage,
    Storage,
    StoredObject,
    storage_from_settings,
    validate_key,
)

pytestmark = pytest.mark.anyio

BAD_KEYS = [
    "",
    "/abs/path.png",
    "../escape.png",
    "a/../b.png",
    "a//b.png",
    "a/b/",
    "./a.png",
    ".hidden",
    "a/.meta",
    "space here.png",
    "a\\b.png",
    "ünïcode.png",
    "a" * 513,
]


@pytest.fixture(params=["file", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    backend: Storage
    if request.param == "file":
        backend = FileStorage(tmp_path / "media")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        # A fresh prefix per test: the session's bucket is shared.
        backend = S3Storage(
            BUCKET,
            endpoint_url=endpoint,
            region=REGION,
            access_key_id="test",
            secret_access_key="test",
            key_prefix=f"t-{uuid.uuid4().hex}",
        )
    yield backend
    await backend.close()


# Both backends


async def test_round_trip_keeps_bytes_and_content_type(storage: Storage) -> None:
    data = bytes(range(256)) * 10
    await storage.put("scenes/ab12/image.png", data, "image/png")
    assert await storage.get("scenes/ab12/image.png") == StoredObject(data, "image/png")


async def test_overwrite_replaces_data_and_type(storage: Storage) -> None:
    await storage.put("a/b.bin", b"first", "image/png")
    await storage.put("a/b.bin", b"second", "image/webp")
    assert await storage.get("a/b.bin") == StoredObject(b"second", "image/webp")


async def test_missing_is_none(storage: Storage) -> None:
    assert await storage.get("nothing/here.png") is None


async def test_delete_and_delete_missing(storage: Storage) -> None:
    await storage.put("x/y.txt", b"hello", "text/plain")
    await storage.delete("x/y.txt")
    assert await storage.get("x/y.txt") is None
    await storage.delete("x/y.txt")  # already gone: fine
    await storage.delete("never/was.txt")


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="storage key"):
        await storage.put(key, b"x", "text/plain")
    with pytest.raises(ValueError, match="storage key"):
        await storage.get(key)
    with pytest.raises(ValueError, match="storage key"):
        await storage.delete(key)


def test_good_keys_are_accepted() -> None:
    for key in ("a", "a.png", "scenes/2025-01-10/ab_12/image.v2.png", "A-Z/0-9"):
        assert validate_key(key) == key


# File backend


async def test_files_live_under_root_with_a_hidden_sidecar(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    await storage.put("s/img.png", b"png-bytes", "image/png")
    assert (tmp_path / "s" / "img.png").read_bytes() == b"png-bytes"
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".img.png.meta", "img.png"]
    await storage.delete("s/img.png")
    assert list((tmp_path / "s").iterdir()) == []


async def test_file_without_sidecar_is_octet_stream(tmp_path: Path) -> None:
    (tmp_path / "raw.bin").write_bytes(b"raw")
    got = await FileStorage(tmp_path).get("raw.bin")
    assert got == StoredObject(b"raw", "application/octet-stream")


# S3 backend


async def test_s3_key_prefix_is_applied(moto_endpoint: str) -> None:
    storage = S3Storage(
        BUCKET,
        endpoint_url=moto_endpoint,
        region=REGION,
        access_key_id="test",
        secret_access_key="test",
        key_prefix="/tenant-a/",
    )
    try:
        await storage.put("scenes/one.png", b"one", "image/png")
        raw = raw_client(moto_endpoint).get_object(Bucket=BUCKET, Key="tenant-a/scenes/one.png")
        assert raw["Body"].read() == b"one"
        assert raw["ContentType"] == "image/png"
        await storage.delete("scenes/one.png")
        listed = raw_client(moto_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="tenant-a/")
        assert listed.get("KeyCount", 0) == 0
    finally:
        await storage.close()


# Choosing a backend


def test_settings_without_a_bucket_use_files(tmp_path: Path) -> None:
    storage = storage_from_settings(Settings(_env_file=None, tollhouse_data_dir=tmp_path))
    assert isinstance(storage, FileStorage)
    assert storage.root == tmp_path / "media"


async def test_settings_with_a_bucket_use_s3(moto_endpoint: str, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        tollhouse_data_dir=tmp_path,
        s3_bucket=BUCKET,
        s3_endpoint_url=moto_endpoint,
        s3_region=REGION,
        s3_access_key_id="test",
        s3_secret_access_key=SecretStr("test"),
        s3_key_prefix=f"settings-{uuid.uuid4().hex}",
    )
    storage = storage_from_settings(settings)
    assert isinstance(storage, S3Storage)
    try:
        await storage.put("k.txt", b"v", "text/plain")
        assert await storage.get("k.txt") == StoredObject(b"v", "text/plain")
    finally:
        await storage.close()
