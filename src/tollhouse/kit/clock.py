"""The one source of "now", always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch (what JavaScript clients call a timestamp)."""
    return int(moment.timestamp() * 1000)
