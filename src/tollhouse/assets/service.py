"""Asset rules: keys scoped to the project (and so its mode), sniffed image types, a size
limit per file and a byte quota per project. Functions flush, never commit.

Upload order: the row first (so the quota check and the row are one transaction, with the
project row locked so two uploads cannot both squeeze under the quota), then the bytes; a
failed write rolls the row back. Removal is the reverse: the row stops being served at once
and `purge` deletes bytes, then rows.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.assets.errors import (
    AssetNotFound,
    AssetQuotaExceeded,
    AssetTooLarge,
    ContentTypeMismatch,
    InvalidAssetData,
    UnsupportedMediaType,
)
from tollhouse.assets.models import Asset
from tollhouse.assets.sniff import sniff
from tollhouse.kit.clock import utcnow
from tollhouse.kit.storage import Storage, StoredObject
from tollhouse.tenancy.models import Project

STORAGE_PREFIX = "assets/"
URL_PREFIX = "/api/assets/"
FILENAME_MAX = 100
PURGE_BATCH = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class AssetLimits:
    max_bytes: int
    quota_bytes: int


def sanitise_filename(filename: str) -> str:
    """The original's rule (`[^A-Za-z0-9._-]` → `_`), without leading dots, bounded."""
    name = _UNSAFE.sub("_", filename.strip()).lstrip(".")[-FILENAME_MAX:]
    if not name:
        raise InvalidAssetData()
    return name


def url_of(asset: Asset) -> str:
    return URL_PREFIX + asset.key


async def _used_bytes(session: AsyncSession, project_id: str) -> int:
    used = await session.scalar(
        select(func.coalesce(func.sum(Asset.size), 0)).where(
            Asset.project_id == project_id, Asset.deleted_at.is_(None)
        )
    )
    return int(used or 0)


async def upload(
    session: AsyncSession,
    storage: Storage,
    limits: AssetLimits,
    project_id: str,
    filename: str,
    data: bytes,
    declared_type: str | None,
) -> Asset:
    if not data:
        raise InvalidAssetData()
    if len(data) > limits.max_bytes:
        raise AssetTooLarge(limits.max_bytes)
    actual = sniff(data)
    if actual is None:
        raise UnsupportedMediaType()
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream" and declared != actual:
        raise ContentTypeMismatch(declared, actual)
    project = await session.scalar(
        select(Project).where(Project.id == project_id).with_for_update()
    )
    assert project is not None, "the caller's key names an existing project"
    used = await _used_bytes(session, project_id)
    if used + len(data) > limits.quota_bytes:
        raise AssetQuotaExceeded(limits.quota_bytes, used)
    stamp = int(utcnow().timestamp() * 1000)
    key = (
        f"{project_id}/{project.mode}/{stamp}-{secrets.token_hex(4)}-{sanitise_filename(filename)}"
    )
    asset = Asset(
        project_id=project_id,
        key=key,
        filename=filename[:200],
        content_type=actual,
        size=len(data),
    )
    session.add(asset)
    await session.flush()
    await storage.put(STORAGE_PREFIX + key, data, actual)
    return asset


async def find(session: AsyncSession, key: str, project_id: str | None = None) -> Asset:
    """A served asset by key (of `project_id` when given), else 404."""
    query = select(Asset).where(
        Asset.key == key, Asset.project_id.is_not(None), Asset.deleted_at.is_(None)
    )
    if project_id is not None:
        query = query.where(Asset.project_id == project_id)
    asset = await session.scalar(query)
    if asset is None:
        raise AssetNotFound()
    return asset


async def read(session: AsyncSession, storage: Storage, key: str) -> tuple[Asset, StoredObject]:
    asset = await find(session, key)
    stored = await storage.get(STORAGE_PREFIX + asset.key)
    if stored is None:
        raise AssetNotFound()
    return asset, stored


async def remove(session: AsyncSession, project_id: str, key: str) -> Asset:
    """Stop serving one of the project's assets; its bytes go with the next purge."""
    asset = await find(session, key, project_id)
    await session.execute(
        update(Asset)
        .where(Asset.id == asset.id, Asset.deleted_at.is_(None))
        .values(deleted_at=utcnow())
    )
    return asset


async def of_project(session: AsyncSession, project_id: str) -> Sequence[Asset]:
    rows = await session.scalars(
        select(Asset)
        .where(Asset.project_id == project_id, Asset.deleted_at.is_(None))
        .order_by(Asset.created_at.desc(), Asset.id)
    )
    return list(rows)


async def purge(session: AsyncSession, storage: Storage) -> int:
    """Delete the bytes, then the rows, of removed assets and of deleted projects' assets."""
    gone = list(
        await session.scalars(
            select(Asset)
            .where(or_(Asset.project_id.is_(None), Asset.deleted_at.is_not(None)))
            .limit(PURGE_BATCH)
        )
    )
    for asset in gone:
        await storage.delete(STORAGE_PREFIX + asset.key)
    if gone:
        await session.execute(delete(Asset).where(Asset.id.in_([a.id for a in gone])))
    return len(gone)
