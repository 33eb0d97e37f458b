"""Timepoint rows as the wire shows them (TimepointResponse, summaries, characters)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, replace
from typing import Any

from tollhouse.generation.events import GenerationEvent
from tollhouse.generation.models import Timepoint
from tollhouse.generation.presets import model_provider
from tollhouse.generation.provenance import permissiveness
from tollhouse.generation.schemas import (
    CharactersResponse,
    CharacterView,
    TimepointResponse,
    TimepointSummary,
)
from tollhouse.generation.tdf import folder as tdf_folder
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import hmac_sha256_hex, secrets_equal


@dataclass(frozen=True, slots=True)
class Links:
    """Where links point: SHARE_URL_BASE for share pages; PUBLIC_BASE_URL (else the address
    the request came in on) for images. A public timepoint's image URL needs no credentials;
    a private one's is signed and expires (`signing_key`, `image_url_ttl`)."""

    share_url_base: str | None
    public_base_url: str | None
    # None: private images' URLs are not signed (the owner loads them with credentials).
    signing_key: str | None = None
    image_url_ttl: int = 3600

    def at(self, request_base: str) -> Links:
        """These links as seen by a request to `request_base` (used when no base is set)."""
        return replace(self, public_base_url=self.public_base_url or request_base)

    def share_url(self, timepoint: Timepoint) -> str | None:
        if not self.share_url_base or timepoint.visibility != "public":
            return None
        return f"{self.share_url_base.rstrip('/')}/{timepoint.slug}"

    def image_signature(self, timepoint_id: uuid.UUID, expires: int) -> str:
        assert self.signing_key is not None
        return hmac_sha256_hex(self.signing_key, f"image|{timepoint_id}|{expires}")

    def image_url(self, timepoint: Timepoint) -> str | None:
        if timepoint.image_key is None:
            return None
        base = (self.public_base_url or "").rstrip("/")
        url = f"{base}/api/v1/timepoints/{timepoint.id}/image"
        if timepoint.visibility == "public" or self.signing_key is None:
            return url
        expires = int(utcnow().timestamp()) + self.image_url_ttl
        signature = self.image_signature(timepoint.id, expires)
        return f"{url}?expires={expires}&signature={signature}"

    def signed_image_ok(self, timepoint_id: uuid.UUID, expires: int, signature: str) -> bool:
        if self.signing_key is None or expires < utcnow().timestamp():
            return False
        return secrets_equal(signature, self.image_signature(timepoint_id, expires))


def image_data_uri(content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def _payload(timepoint: Timepoint, key: str) -> Any:
    return (timepoint.tdf_payload or {}).get(key)


def response(
    timepoint: Timepoint,
    links: Links,
    *,
    full: bool = False,
    image: bytes | None = None,
    request_context: dict[str, Any] | None = None,
) -> TimepointResponse:
    body = TimepointResponse(
        id=timepoint.id,
        query=timepoint.query,
        slug=timepoint.slug,
        status=timepoint.status,
        year=timepoint.year,
        month=timepoint.month,
        day=timepoint.day,
        season=timepoint.season,
        time_of_day=timepoint.time_of_day,
        era=timepoint.era,
        location=timepoint.location,
        has_image=timepoint.image_key is not None,
        # include_image: the image itself, as base64 and as a data: URI (flash-contract §4.5).
        image_url=image_data_uri(timepoint.image_content_type or "image/png", image)
        if image is not None
        else links.image_url(timepoint),
        image_base64=base64.b64encode(image).decode() if image is not None else None,
        text_model_used=timepoint.text_model_used,
        image_model_used=timepoint.image_model_used,
        created_at=timepoint.created_at,
        error=timepoint.error_message,
        blob_folder_name=tdf_folder(timepoint) if timepoint.blob_path else None,
        blob_path=timepoint.blob_path,
        blob_written_at=timepoint.blob_written_at,
        is_deleted=timepoint.is_deleted,
        sequence_id=timepoint.sequence_id,
        tags=list(timepoint.tags or []),
        visibility="private" if timepoint.visibility == "private" else "public",
        share_url=links.share_url(timepoint),
        preset_used=timepoint.preset,
        generation_time_ms=timepoint.generation_time_ms,
        # What the run recorded (the provider that answered); for rows without a payload,
        # what the model id says.
        model_provider=_payload(timepoint, "model_provider")
        or model_provider(timepoint.text_model_used),
        model_permissiveness=permissiveness(timepoint.text_model_used, timepoint.image_model_used),
        request_context=request_context,
    )
    if full:
        body.image_prompt = _payload(timepoint, "optimized_prompt") or _payload(
            timepoint, "image_prompt"
        )
        body.metadata = {
            "graph": _payload(timepoint, "graph_data"),
            "camera": _payload(timepoint, "camera_data"),
            "image_prompt_data": _payload(timepoint, "image_prompt_data"),
        }
        body.characters = _payload(timepoint, "character_data")
        body.scene = _payload(timepoint, "scene_data")
        body.dialog = _payload(timepoint, "dialog")
        body.grounding = _payload(timepoint, "grounding_data")
        body.moment = _payload(timepoint, "moment_data")
    return body


def done_event(timepoint: Timepoint) -> GenerationEvent:
    """The terminal SSE event of a saved run (flash-contract §4.4)."""
    return GenerationEvent(
        "done",
        "complete",
        {
            "timepoint_id": str(timepoint.id),
            "slug": timepoint.slug,
            "status": timepoint.status,
            "year": timepoint.year,
            "location": timepoint.location,
            "total_latency_ms": timepoint.generation_time_ms,
            "has_image": timepoint.image_key is not None,
            "saved": True,
        },
        100,
        timepoint.error_message if timepoint.status == "failed" else None,
    )


def summary(timepoint: Timepoint) -> TimepointSummary:
    return TimepointSummary(
        id=timepoint.id,
        query=timepoint.query,
        slug=timepoint.slug,
        status=timepoint.status,
        year=timepoint.year,
        location=timepoint.location,
        has_image=timepoint.image_key is not None,
        visibility="private" if timepoint.visibility == "private" else "public",
        created_at=timepoint.created_at,
    )


def characters(timepoint: Timepoint) -> CharactersResponse | None:
    """None when the timepoint holds no character data."""
    data = _payload(timepoint, "character_data")
    people = data.get("characters") if isinstance(data, dict) else None
    if not people:
        return None
    views = [CharacterView.model_validate(person) for person in people]
    return CharactersResponse(
        timepoint_id=timepoint.id,
        query=timepoint.query,
        year=timepoint.year,
        location=timepoint.location,
        era=timepoint.era,
        total_characters=len(views),
        speaking_characters=sum(1 for view in views if view.speaks_in_scene),
        characters=views,
    )
