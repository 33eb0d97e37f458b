"""Assets through HTTP (platform-contract §3.11) on SQLite and PostgreSQL, on files and on
the S3 peer: upload (JSON base64 and multipart), public reads with their type and cache
headers, limits (sniffed type, size, quota), delete, purge, the project's deletion, and a
tier's image from an asset."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from pydantic import SecretStr
from sqlalchemy import func, select

from platform_fixtures import database, new_project
from s3_peer import BUCKET, REGION, raw_client
from support import ClientFactory, app_of, assert_error
from tollhouse import wiring
from tollhouse.assets.models import Asset

pytestmark = pytest.mark.anyio


def png(width: int = 1, height: int = 1, padding: int = 0) -> bytes:
    """A valid PNG (one chunk of `padding` extra bytes to make it as big as a test needs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1) * height)
    extra = chunk(b"teXt", b"x" * padding) if padding else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32 + b"\xff\xd9"


def as_json(filename: str, data: bytes, content_type: str | None = "image/png") -> dict[str, Any]:
    body: dict[str, Any] = {"filename": filename, "data": base64.b64encode(data).decode()}
    if content_type:
        body["contentType"] = content_type
    return body


@pytest.fixture(params=["files", "s3"])
async def client(request: pytest.FixtureRequest, make_client: ClientFactory) -> httpx.AsyncClient:
    if request.param == "files":
        return await make_client(asset_max_bytes=4096, asset_quota_bytes=8192)
    endpoint = request.getfixturevalue("moto_endpoint")
    return await make_client(
        asset_max_bytes=4096,
        asset_quota_bytes=8192,
        s3_bucket=BUCKET,
        s3_endpoint_url=endpoint,
        s3_region=REGION,
        s3_access_key_id="test",
        s3_secret_access_key=SecretStr("test"),
    )


async def purge(client: httpx.AsyncClient) -> int:
    app = app_of(client)
    return await wiring.purge_deleted_assets(app.state.database, app.state.assets)


async def stored(client: httpx.AsyncClient, key: str) -> bytes | None:
    found = await app_of(client).state.assets.storage.get(f"assets/{key}")
    return None if found is None else bytes(found.data)


async def test_upload_serve_delete_and_purge(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    image = png()
    uploaded = await client.post("/api/assets", json=as_json("a b.png", image), headers=keys.secret)
    assert uploaded.status_code == 200, uploaded.text
    body = uploaded.json()
    key = body["key"]
    assert key.startswith(f"{keys.project_id}/test/")
    assert key.endswith("-a_b.png")
    assert body["url"] == f"/api/assets/{key}"
    assert body["contentType"] == "image/png"
    assert body["size"] == len(image)

    served = await client.get(body["url"])  # public: product pages show it to anyone
    assert served.status_code == 200
    assert served.content == image
    assert served.headers["content-type"] == "image/png"
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert served.headers["x-content-type-options"] == "nosniff"

    multipart = await client.post(
        "/api/assets",
        files={"file": ("photo.jpg", JPEG, "image/jpeg")},
        headers=keys.secret,
    )
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["contentType"] == "image/jpeg"
    listed = await client.get("/api/assets", headers=keys.secret)
    assert {a["key"] for a in listed.json()["assets"]} == {key, multipart.json()["key"]}

    other = await new_project(client, name="other")
    assert_error(await client.delete(body["url"], headers=other.secret), 404, "asset_not_found")
    deleted = await client.delete(body["url"], headers=keys.secret)
    assert deleted.status_code == 200
    assert deleted.json()["deleted"]["key"] == key
    assert_error(await client.get(body["url"]), 404, "asset_not_found")
    assert await stored(client, key) == image  # bytes go with the purge
    assert await purge(client) == 1
    assert await stored(client, key) is None
    async with database(client).session() as session:
        assert await session.scalar(select(func.count()).select_from(Asset)) == 1


async def test_bad_uploads_are_refused_and_store_nothing(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    post = lambda body: client.post("/api/assets", json=body, headers=keys.secret)  # noqa: E731
    assert_error(await post(as_json("a.txt", b"hello", None)), 415, "unsupported_media_type")
    # An HTML page calling itself a PNG is still HTML.
    html = b"<html><script>alert(1)</script></html>"
    assert_error(await post(as_json("x.png", html)), 415, "unsupported_media_type")
    assert_error(await post(as_json("x.png", JPEG, "image/png")), 415, "content_type_mismatch")
    assert_error(await post(as_json("big.png", png(padding=5000))), 413, "asset_too_large")
    assert_error(await post({"filename": "x.png", "data": "not base64!"}), 400, "invalid_asset")
    assert_error(await post({"filename": "x.png"}), 422, "validation_error")
    pk_only = await client.post(
        "/api/assets", json=as_json("a.png", png()), headers=keys.publishable
    )
    assert pk_only.status_code == 403
    assert (await client.post("/api/assets", json=as_json("a.png", png()))).status_code == 401
    for _ in range(2):  # 2 x ~3.1 KB fit the 8 KB quota; the third does not
        assert (await post(as_json("fill.png", png(padding=3000)))).status_code == 200
    assert_error(await post(as_json("over.png", png(padding=3000))), 413, "asset_quota_exceeded")
    async with database(client).session() as session:
        assert await session.scalar(select(func.count()).select_from(Asset)) == 2
    assert_error(await client.get("/api/assets/nope/none.png"), 404, "asset_not_found")


async def test_a_deleted_projects_assets_stop_serving_and_are_purged(
    client: httpx.AsyncClient,
) -> None:
    signup = await client.post(
        "/console/api/v1/auth/signup", json={"email": "d@example.com", "password": "x" * 12}
    )
    auth = {"Cookie": f"tollhouse_session={signup.json()['token']}"}
    client.cookies.clear()
    created = await client.post(
        "/console/api/v1/projects", json={"name": "shop", "type": "store"}, headers=auth
    )
    assert created.status_code == 201, created.text
    project = created.json()
    secret = {"Authorization": f"Bearer {project['secret_key']}"}
    uploaded = (
        await client.post("/api/assets", json=as_json("logo.png", png()), headers=secret)
    ).json()

    tier = await client.post(
        f"/console/api/v1/projects/{project['project']['id']}/tiers",
        json={"name": "mug", "price_cents": 1200, "billing_mode": "one_off"},
        headers=auth,
    )
    assert tier.status_code == 201, tier.text
    imaged = await client.put(
        f"/console/api/v1/projects/{project['project']['id']}/tiers/mug/image",
        json={"assetKey": uploaded["key"]},
        headers=auth,
    )
    assert imaged.status_code == 200, imaged.text
    assert imaged.json()["image_url"] == f"http://tollhouse.test{uploaded['url']}"
    products = await client.get("/api/products", headers=secret)
    assert products.json()["products"][0]["imageUrl"].endswith(uploaded["url"])

    gone = await client.delete(f"/console/api/v1/projects/{project['project']['id']}", headers=auth)
    assert gone.status_code == 204
    assert_error(await client.get(uploaded["url"]), 404, "asset_not_found")
    assert await purge(client) == 1
    assert await stored(client, uploaded["key"]) is None


async def test_s3_objects_live_under_the_assets_prefix(
    moto_endpoint: str, make_client: ClientFactory
) -> None:
    client = await make_client(
        s3_bucket=BUCKET,
        s3_endpoint_url=moto_endpoint,
        s3_region=REGION,
        s3_access_key_id="test",
        s3_secret_access_key=SecretStr("test"),
    )
    keys = await new_project(client)
    key = (
        await client.post("/api/assets", json=as_json("a.png", png()), headers=keys.secret)
    ).json()["key"]
    raw = raw_client(moto_endpoint).get_object(Bucket=BUCKET, Key=f"assets/{key}")
    assert raw["ContentType"] == "image/png"
    await client.delete(f"/api/assets/{key}", headers=keys.secret)
    await purge(client)
    with pytest.raises(ClientError):
        raw_client(moto_endpoint).get_object(Bucket=BUCKET, Key=f"assets/{key}")
