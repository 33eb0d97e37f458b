"""Discovery content (flash-contract §1.7 `/content/*`), from real data: this project's
public completed timepoints and, when configured, the clockchain's moments. The contract's
routes were empty stubs.

- today: moments on today's month and day (UTC), any year;
- weekly prompt: one moment of this ISO week's days in history, the same all week;
- featured: public scenes, those with images first, newest first.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.generation import repository
from tollhouse.generation.models import Timepoint
from tollhouse.generation.views import Links
from tollhouse.upstreams.clockchain_client import ClockchainClient, ClockchainUnavailable

log = structlog.get_logger("tollhouse.generation")

MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}


def timepoint_item(timepoint: Timepoint, links: Links) -> dict[str, Any]:
    return {
        "source": "timepoint",
        "id": str(timepoint.id),
        "title": timepoint.query,
        "slug": timepoint.slug,
        "year": timepoint.year,
        "month": timepoint.month,
        "day": timepoint.day,
        "location": timepoint.location,
        "image_url": links.image_url(timepoint),
        "share_url": links.share_url(timepoint),
    }


def _month(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    return MONTHS.get(str(value).lower()) if value else None


def moment_item(moment: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "clockchain",
        "id": moment.get("path"),
        "title": moment.get("name"),
        "slug": None,
        "year": moment.get("year"),
        "month": _month(moment.get("month")),
        "day": moment.get("day"),
        "location": ", ".join(
            str(moment[key]) for key in ("city", "region", "country") if moment.get(key)
        )
        or None,
        "image_url": moment.get("image_url"),
        "share_url": None,
        "one_liner": moment.get("one_liner"),
    }


async def _clockchain_today(clockchain: ClockchainClient | None) -> list[dict[str, Any]]:
    if clockchain is None:
        return []
    try:
        return [moment_item(moment) for moment in await clockchain.today()]
    except ClockchainUnavailable as exc:
        log.warning("clockchain_today_failed", error=str(exc))
        return []


async def today(
    session: AsyncSession,
    project_id: str,
    links: Links,
    clockchain: ClockchainClient | None,
    day: date,
    limit: int,
) -> list[dict[str, Any]]:
    ours = await repository.public_completed(
        session, project_id, on=[(day.month, day.day)], limit=limit
    )
    items = [timepoint_item(timepoint, links) for timepoint in ours]
    # The clockchain's "today" is its own clock's; ours decides.
    theirs = [
        item
        for item in await _clockchain_today(clockchain)
        if (item["month"], item["day"]) == (day.month, day.day)
    ]
    return (items + theirs)[:limit]


async def weekly_prompt(
    session: AsyncSession,
    project_id: str,
    clockchain: ClockchainClient | None,
    day: date,
) -> dict[str, Any]:
    monday = day - timedelta(days=day.weekday())
    week = [monday + timedelta(days=offset) for offset in range(7)]
    year, number, _ = day.isocalendar()
    candidates: list[dict[str, Any]] = [
        {"prompt": t.query, "source": "timepoint", "id": str(t.id), "year": t.year}
        for t in await repository.public_completed(
            session, project_id, on=[(d.month, d.day) for d in week], limit=50
        )
    ]
    if clockchain is not None:
        try:
            days = {(d.month, d.day) for d in week}
            for moment in await clockchain.moments(limit=100):
                if (_month(moment.get("month")), moment.get("day")) in days:
                    candidates.append(
                        {
                            "prompt": moment.get("name"),
                            "source": "clockchain",
                            "id": moment.get("path"),
                            "year": moment.get("year"),
                        }
                    )
        except ClockchainUnavailable as exc:
            log.warning("clockchain_moments_failed", error=str(exc))
    candidates = sorted(
        (c for c in candidates if c["prompt"]), key=lambda c: (str(c["source"]), str(c["id"]))
    )
    # The same pick all week, a different one next week.
    chosen = candidates[(year * 53 + number) % len(candidates)] if candidates else None
    return {
        "prompt": chosen["prompt"] if chosen else None,
        "week": f"{year}-W{number:02d}",
        "based_on": chosen,
    }


async def featured(
    session: AsyncSession, project_id: str, links: Links, limit: int
) -> list[dict[str, Any]]:
    ours = await repository.public_completed(session, project_id, limit=limit)
    return [timepoint_item(timepoint, links) for timepoint in ours]
