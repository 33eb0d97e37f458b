"""`/api/assets` (platform-contract §3.11): upload with the secret key (JSON + base64 as the
original, or multipart), public reads, delete, list."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from tollhouse.assets import service
from tollhouse.assets.errors import InvalidAssetData
from tollhouse.assets.models import Asset
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import SecretKeyCaller
from tollhouse.kit.clock import epoch_ms
from tollhouse.kit.errors import ValidationFailed
from tollhouse.kit.storage import Storage

router = APIRouter(tags=["assets"])

UPLOAD_PATH = "/api/assets"

# Keys hold a timestamp and a random part: an asset's bytes never change under its URL.
CACHE_CONTROL = "public, max-age=31536000, immutable"
AssetKey = Annotated[str, Path(min_length=1, max_length=400)]


@dataclass(frozen=True, slots=True)
class AssetContext:
    storage: Storage
    limits: service.AssetLimits

    async def close(self) -> None:
        await self.storage.close()


def asset_context(request: Request) -> AssetContext:
    return cast(AssetContext, request.app.state.assets)


class AssetUpload(BaseModel):
    """The original's JSON body."""

    model_config = ConfigDict(populate_by_name=True)

    filename: str = Field(min_length=1, max_length=200)
    data: str = Field(min_length=1)
    content_type: str | None = Field(None, alias="contentType", max_length=100)


def _body(asset: Asset) -> dict[str, Any]:
    return {
        "key": asset.key,
        "url": service.url_of(asset),
        "contentType": asset.content_type,
        "size": asset.size,
        "createdAt": epoch_ms(asset.created_at),
    }


async def _read_upload(request: Request) -> tuple[str, bytes, str | None]:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=5)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidAssetData("Send the file in a multipart field named `file`.")
        return file.filename or "", await file.read(), file.content_type
    try:
        body = AssetUpload.model_validate_json(await request.body())
    except ValueError as exc:
        raise ValidationFailed(detail=str(exc)[:500]) from exc
    try:
        data = base64.b64decode(body.data.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidAssetData() from exc
    return body.filename, data, body.content_type


@router.post(UPLOAD_PATH)
async def upload_asset(
    caller: SecretKeyCaller, request: Request, session: SessionDep
) -> dict[str, Any]:
    filename, data, declared = await _read_upload(request)
    context = asset_context(request)
    asset = await service.upload(
        session, context.storage, context.limits, caller.project_id, filename, data, declared
    )
    return _body(asset)


@router.get("/api/assets")
async def list_assets(caller: SecretKeyCaller, session: SessionDep) -> dict[str, Any]:
    assets = await service.of_project(session, caller.project_id)
    return {"assets": [_body(asset) for asset in assets]}


@router.get("/api/assets/{key:path}")
async def get_asset(key: AssetKey, request: Request, session: SessionDep) -> Response:
    """Public, as the original: product pages show these images to anyone."""
    asset, stored = await service.read(session, asset_context(request).storage, key)
    return Response(
        stored.data,
        media_type=asset.content_type,
        headers={
            "Cache-Control": CACHE_CONTROL,
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )


@router.delete("/api/assets/{key:path}")
async def delete_asset(
    key: AssetKey, caller: SecretKeyCaller, session: SessionDep
) -> dict[str, Any]:
    asset = await service.remove(session, caller.project_id, key)
    return {"success": True, "deleted": {"key": asset.key}}
