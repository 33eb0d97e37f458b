"""Timepoints as TDF records (flash-contract §1.3 `/tdf`, §4.5, §9): what the clockchain's
`POST /ingest/tdf` takes as it is, and what export writes to storage.

`tdf_hash` is the sha256 of the payload as the TDF library canonicalises it
(`json.dumps(payload, sort_keys=True, default=str)`), so a record we export hashes the same
on the clockchain's side. The row's stored `tdf_hash` is the same value.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tollhouse.generation.models import Timepoint
from tollhouse.kit.clock import utcnow
from tollhouse.kit.storage import Storage

VERSION = "1.0.0"
GENERATOR = "timepoint-flash"
MEDIA_TYPE = "application/json"


def tdf_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _confidence(payload: dict[str, Any]) -> float | None:
    grounding = payload.get("grounding_data")
    value = grounding.get("grounding_confidence") if isinstance(grounding, dict) else None
    return float(value) if isinstance(value, int | float) else None


def record(timepoint: Timepoint) -> dict[str, Any]:
    """The TDF record of a completed timepoint."""
    payload = timepoint.tdf_payload or {}
    return {
        "id": str(timepoint.id),
        "version": VERSION,
        "source": "flash",
        "timestamp": timepoint.created_at.isoformat(),
        "provenance": {
            "generator": GENERATOR,
            "run_id": None,
            # The grounding agent's own confidence (the contract sends null).
            "confidence": _confidence(payload),
            "flash_id": str(timepoint.id),
        },
        "payload": payload,
        "tdf_hash": tdf_hash(payload),
        "entity_ids": list(payload.get("entity_ids") or []),
    }


def folder(timepoint: Timepoint) -> str:
    return f"timepoints/{timepoint.id}"


async def write_blob(storage: Storage, timepoint: Timepoint) -> None:
    """The record to storage next to the image; the row says where and when."""
    key = f"{folder(timepoint)}/tdf.json"
    body = json.dumps(record(timepoint), sort_keys=True, indent=2, default=str).encode()
    await storage.put(key, body, MEDIA_TYPE)
    timepoint.blob_path = key
    timepoint.blob_written_at = utcnow()
