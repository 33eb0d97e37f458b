"""What a jump carries from the source scene into the new one: the place, the people who
would still be there (older or younger), and what had just happened — the original carried
only the place and the year."""

from __future__ import annotations

from typing import Any

from tollhouse.generation.models import Timepoint
from tollhouse.generation.prompts._shared import compose, date_words
from tollhouse.temporal.moment import Moment

RECENT_LINES = 4


def _span(units: int, unit: str) -> str:
    return f"{units} {unit}{'' if units == 1 else 's'}"


def query(source: Timepoint, target: Moment, units: int, unit: str, forward: bool) -> str:
    """The new timepoint's query: short, human, and within generation's 500 characters."""
    place = source.location or "the same place"
    relation = "after" if forward else "before"
    text = (
        f"{place}, {date_words(target.year, target.month, target.day)}: "
        f"{_span(units, unit)} {relation} “{source.query}”"
    )
    return text[:500]


def continuity(source: Timepoint, target: Moment, units: int, unit: str, forward: bool) -> str:
    """Instructions every step after the judge sees (SceneRequest.continuity)."""
    payload: dict[str, Any] = source.tdf_payload or {}
    span = _span(units, unit)
    when = date_words(target.year, target.month, target.day)
    if target.time_of_day:
        when = f"{when}, {target.time_of_day}"
    people = (payload.get("character_data") or {}).get("characters") or []
    cast = "\n".join(
        f"- {person.get('name')}" + (f" ({person.get('role')})" if person.get("role") else "")
        for person in people
        if isinstance(person, dict) and person.get("name")
    )
    moment: dict[str, Any] = payload.get("moment_data") or {}
    dialog = [line for line in payload.get("dialog") or [] if isinstance(line, dict)]
    said = "\n".join(
        f"{line.get('speaker')}: {line.get('text')}" for line in dialog[-RECENT_LINES:]
    )
    if forward:
        aging = f"{span} older"
        bridge = moment.get("what_happens_next") or moment.get("beat")
        bridge_title = "What was about to happen"
    else:
        aging = f"{span} younger"
        bridge = moment.get("what_just_happened") or moment.get("beat")
        bridge_title = "What the later scene grew out of"
    return compose(
        "## Continuity with the previous moment (keep it)",
        f"Same place: {source.location or 'as before'}. The date is fixed: {when}"
        + (f" ({source.era})" if source.era else "")
        + f". This is {span} {'after' if forward else 'before'}: {source.query}.",
        f"People of the previous moment (include those who would plausibly still be there, "
        f"{aging}; leave out anyone who would have left, not yet arrived, or died):\n{cast}"
        if cast
        else "",
        f"{bridge_title}: {bridge}" if bridge else "",
        f"Last words spoken:\n{said}" if said else "",
    )
