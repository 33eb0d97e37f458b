"""Scripted LLM answers for a whole scene run: "Apollo 11 landing, July 1969".

`script_scene(script)` registers an answer for every agent's schema (keyed by the Pydantic
class name, as the peers see it); tests then override the one answer they care about.
"""

from __future__ import annotations

import re
from typing import Any

from llm_script import Call, Script

QUERY = "Apollo 11 landing, July 1969"

# The cast in speaking order (primary roles first), then extras for the cap/parallel tests.
CAST: list[dict[str, Any]] = [
    {
        "name": "Neil Armstrong",
        "role": "primary",
        "speaks_in_scene": True,
        "description": "Commander, flying Eagle by hand over a boulder field",
    },
    {
        "name": "Buzz Aldrin",
        "role": "primary",
        "speaks_in_scene": True,
        "description": "Lunar Module Pilot, calling out altitude and rate",
    },
    {
        "name": "Charlie Duke",
        "role": "secondary",
        "speaks_in_scene": True,
        "description": "CAPCOM in Houston, the crew's only voice from Earth",
    },
    {
        "name": "Gene Kranz",
        "role": "secondary",
        "speaks_in_scene": False,
        "description": "Flight director on the White team",
    },
    {
        "name": "Steve Bales",
        "role": "background",
        "speaks_in_scene": False,
        "description": "Guidance officer who called 'go' through the program alarms",
    },
    {
        "name": "Jack Garman",
        "role": "background",
        "speaks_in_scene": False,
        "description": "Computer specialist backing up Bales",
    },
    {
        "name": "Michael Collins",
        "role": "secondary",
        "speaks_in_scene": False,
        "description": "Command Module Pilot, alone in Columbia overhead",
    },
    {
        "name": "Deke Slayton",
        "role": "background",
        "speaks_in_scene": False,
        "description": "Director of Flight Crew Operations, at the console beside Duke",
    },
]

LINES: dict[str, list[tuple[str, str]]] = {
    "Neil Armstrong": [
        ("Houston, Tranquility Base here. The Eagle has landed.", "steady"),
        ("Engine arm is off. We're looking at a lot of rocks out there.", "measured"),
        (
            "We'll get to the details of what's around here, but it looks like a collection "
            "of just about every variety of shape.",
            "absorbed",
        ),
    ],
    "Buzz Aldrin": [
        ("Contact light. Okay, engine stop. ACA out of detent.", "clipped"),
        ("Very smooth touchdown. Looks like we're venting the oxidizer.", "crisp"),
    ],
    "Charlie Duke": [
        (
            "Roger, Tranquility, we copy you on the ground. You got a bunch of guys about to "
            "turn blue. We're breathing again. Thanks a lot.",
            "relieved",
        ),
        ("Roger, Eagle. And you're stay for T1. Over.", "brisk"),
    ],
}

GENERIC_LINE = ("Copy.", "terse")


def _speaker_line(call: Call) -> dict[str, str]:
    """The next scripted line of whoever the role-play prompt says is speaking."""
    speaker = re.search(r"You are (.+?)\. Speak your next line\.", call.prompt)
    name = speaker.group(1) if speaker else ""
    spoken_before = call.prompt.count(f"\n{name}: ") + call.prompt.startswith(f"{name}: ")
    lines = LINES.get(name, [GENERIC_LINE])
    text, tone = lines[min(spoken_before, len(lines) - 1)]
    return {"text": text, "tone": tone}


def _bio(call: Call) -> dict[str, Any]:
    subject = call.prompt.split("## Write the profile of", 1)[-1]
    return bio(next((p for p in CAST if p["name"] in subject), CAST[0]))


def bio(person: dict[str, Any]) -> dict[str, Any]:
    """The scripted CharacterBio of one of CAST."""
    name = person["name"]
    return {
        "name": name,
        "role": person["role"],
        "speaks_in_scene": person["speaks_in_scene"],
        "system_prompt": f"You are {name}, {person['description']}, on 20 July 1969.",
        "dialog_context": "Eagle is seconds from touchdown with fuel nearly gone.",
        "personality": "Calm under load; trusts procedure and the people on the loop.",
        "speaking_style": "Short radio phrases, call signs, numbers; no wasted words.",
        "emotional_state": "Focused; relief held back until the engine is safe.",
        "historical_note": f"{name} took part in the Apollo 11 mission.",
    }


def _dialog_lines(count: int) -> list[dict[str, str]]:
    order = ["Neil Armstrong", "Buzz Aldrin", "Charlie Duke"]
    said = {name: 0 for name in order}
    lines = []
    for turn in range(count):
        name = order[turn % len(order)]
        text, tone = LINES[name][min(said[name], len(LINES[name]) - 1)]
        said[name] += 1
        lines.append({"speaker": name, "text": text, "tone": tone})
    return lines


def scripted(name: str) -> Any:
    """What `script_scene` answers a schema with (for rows seeded without a run)."""
    script = Script()
    script_scene(script)
    return script.answer(Call("structured", "", name, "", "", {}, "openai"), None)


def script_scene(
    script: Script,
    *,
    year: int = 1969,
    characters: int = 3,
    query_type: str = "historical",
    has_critical: bool = False,
) -> None:
    """Answers for every agent; `characters` stubs come back from identification."""
    script.respond("JudgeVerdict", {
        "query_type": query_type, "is_valid": True,
        "cleaned_query": "Apollo 11 Moon landing, 20 July 1969", "confidence": 0.97,
        "reason": "A well-documented historical moment.", "suggested_query": None,
        "detected_year": year, "detected_location": "Sea of Tranquility, the Moon",
        "detected_figures": ["Neil Armstrong", "Buzz Aldrin"], "unsafe": False,
    })  # fmt: skip
    script.respond("Grounding", {
        "verified_facts": [
            "Eagle touched down at 20:17:40 UTC on 20 July 1969.",
            "Armstrong flew the final descent manually to avoid a boulder field.",
            "Program alarms 1202 and 1201 sounded during powered descent.",
        ],
        "key_figures": [
            {"name": "Neil Armstrong", "role": "Commander", "note": "at the controls"},
            {"name": "Buzz Aldrin", "role": "LM Pilot", "note": "reading out the numbers"},
        ],
        "date_and_place": "20 July 1969, Sea of Tranquility (0.674 N, 23.473 E)",
        "uncertainties": ["Exact fuel margin at touchdown is quoted variously."],
        "sources": ["NASA Apollo 11 Lunar Surface Journal"],
        "verified_year": year, "grounding_confidence": 0.95,
    })  # fmt: skip
    script.respond("Timeline", {
        "year": year, "month": 7, "day": 20, "date_precision": "day",
        "season": "summer", "time_of_day": "afternoon (Houston), 20:17 UTC",
        "era": "Space Race", "location": "Tranquility Base, Sea of Tranquility, the Moon",
        "historical_context": "Eight years after Kennedy's challenge, the first crewed landing.",
    })  # fmt: skip
    script.respond("SceneSetting", {
        "setting": "The cramped cabin of the Lunar Module Eagle, two men standing at the windows",
        "architecture": "Aluminium frames, Velcro, switch panels and circuit-breaker rows",
        "atmosphere": "Silence after the engine cut, then disbelief",
        "weather": "None: vacuum", "lighting": "Low sun behind, harsh shadows on grey regolith",
        "sensory_details": ["hiss of the cabin fans", "crackle of the S-band loop"],
        "period_objects": ["DSKY keypad", "flight checklist on a ring binder"],
        "color_palette": ["grey", "white", "black"],
        "notable_absences": ["no touchscreens", "no digital photography"],
    })  # fmt: skip
    assert characters <= len(CAST), f"the scripted cast has {len(CAST)} people"
    stub_keys = ("name", "role", "speaks_in_scene", "description")
    cast = [{key: person[key] for key in stub_keys} for person in CAST[:characters]]
    script.respond("CharacterList", {"characters": cast})
    script.respond("CharacterGraph", {
        "relationships": [
            {"source": "Neil Armstrong", "target": "Buzz Aldrin", "kind": "commander/crewmate",
             "note": "Professional trust, little warmth"},
            {"source": "Charlie Duke", "target": "Neil Armstrong", "kind": "CAPCOM/crew",
             "note": "The voice of Mission Control"},
        ],
        "factions": [{"name": "Eagle crew", "members": ["Neil Armstrong", "Buzz Aldrin"],
                      "aim": "Land safely"}],
        "power_dynamics": "Armstrong decides; Houston can only advise at this distance.",
    })  # fmt: skip
    script.respond("CharacterBio", _bio)
    script.respond("DramaticMoment", {
        "beat": "The engine has just shut down; Eagle sits on the Moon.",
        "what_just_happened": "A manual landing with under a minute of fuel left.",
        "what_happens_next": "The crew expects to check systems for a stay decision.",
        "tension": "Nobody knows if the landing gear and ascent stage are sound.",
        "stakes": "The crew's lives and a decade of national effort.",
        "emotional_tone": "held breath turning to relief",
        "focal_action": "Aldrin's gloved hand on the engine stop switch",
        "plot_summary": "Eagle has just landed with seconds of fuel left; Houston waits.",
        "narrative": "The descent engine falls silent. Aldrin's hand is still on the stop "
        "switch as Armstrong reports to Houston that the Eagle has landed.",
    })  # fmt: skip
    script.respond("CameraSetup", {
        "shot": "medium two-shot", "angle": "from behind, over the shoulders",
        "lens": "28mm, slight distortion of the cramped cabin",
        "composition": "Both men framed by the triangular windows and the grey surface beyond",
        "focal_subject": "the lunar horizon through the window",
        "depth_of_field": "deep", "lighting_setup": "sunlight through the windows only",
    })  # fmt: skip
    script.respond("SpokenLine", _speaker_line)
    script.respond("DialogScript", {"lines": _dialog_lines(7)})
    script.respond("DialogCritique", {
        "issues": [{"line": 5, "kind": "voice", "severity": "critical" if has_critical
                    else "minor", "note": "Aldrin sounds like Armstrong"}] ,
        "has_critical": has_critical,
        "revision_instructions": "Give Aldrin his numbers-first cadence." if has_critical
        else "",
    })  # fmt: skip
    script.respond("ImagePrompt", {
        "prompt": "Two astronauts in white pressure suits stand at the triangular windows of a "
        "cramped lunar module cabin, grey cratered plain outside under a black sky.",
        "style": "1969 Hasselblad colour transparency",
        "key_elements": ["pressure suits", "triangular windows", "lunar surface"],
    })  # fmt: skip
    script.respond("OptimizedPrompt", {
        "prompt": "Two astronauts in white suits lean toward small triangular windows, "
        "shoulders tense, grey lunar plain beyond, black sky, Hasselblad 1969 colour.",
        "word_count": 24,
    })  # fmt: skip
