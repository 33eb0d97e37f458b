"""Assets' refusals, each with a stable code."""

from __future__ import annotations

from tollhouse.assets.sniff import ACCEPTED_TYPES
from tollhouse.kit.errors import BadRequest, NotFound, PayloadTooLarge, TollhouseError


class AssetNotFound(NotFound):
    code = "asset_not_found"
    message = "No such asset."


class UnsupportedMediaType(TollhouseError):
    status_code = 415
    code = "unsupported_media_type"
    message = f"Assets are images: one of {', '.join(ACCEPTED_TYPES)} (checked from the bytes)."


class ContentTypeMismatch(UnsupportedMediaType):
    code = "content_type_mismatch"

    def __init__(self, declared: str, actual: str) -> None:
        super().__init__(f"contentType says {declared} but the bytes are {actual}.")


class AssetTooLarge(PayloadTooLarge):
    code = "asset_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"An asset may be at most {limit} bytes.", detail={"maxBytes": limit})


class AssetQuotaExceeded(TollhouseError):
    status_code = 413
    code = "asset_quota_exceeded"

    def __init__(self, quota: int, used: int) -> None:
        super().__init__(
            f"The project's assets would exceed its quota of {quota} bytes ({used} used).",
            detail={"quotaBytes": quota, "usedBytes": used},
        )


class InvalidAssetData(BadRequest):
    code = "invalid_asset"
    message = "data must be base64 (the file's bytes), and filename must not be empty."
