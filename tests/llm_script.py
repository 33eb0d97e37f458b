"""What the local LLM peers answer: one script shared by the OpenAI-protocol peer and the
Gemini peer (see llm_peer.py).

    script.respond("Scene", {"title": "..."})   # the JSON schema's name / title
    script.respond("text", lambda call: call.prompt.upper())
    script.respond("image", png_bytes)
    script.fail("*", 503, times=2)              # the next two calls of any kind
    script.latency = 0.2                        # seconds before every answer
    script.gather("CharacterBio", 4)            # hold those until four are in flight at once
    script.most_in_flight["CharacterBio"]       # the most seen in flight at once
    script.calls                                # [Call(kind, model, schema_name, ...)]

Unscripted structured calls get a value generated from the request's JSON schema, text calls
"scripted text", image calls a tiny PNG.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    kind: str  # "structured" | "text" | "stream" | "image"
    model: str
    schema_name: str | None
    system: str
    prompt: str
    body: dict[str, Any]
    protocol: str  # "openai" | "gemini"


Answer = Any | Callable[[Call], Any]


@dataclass
class _Failure:
    name: str
    status: int
    times: int
    retry_after: float | None
    protocol: str | None


GATHER_SECONDS = 10.0


@dataclass
class Script:
    latency: float = 0.0
    calls: list[Call] = field(default_factory=list)
    # What `GET /v1/models` lists (OpenRouter's shape: pricing, context, modalities).
    models: list[dict[str, Any]] = field(default_factory=list)
    _answers: dict[str, Answer] = field(default_factory=dict)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Calls in flight now, and the most seen at once, per name: parallelism is proven by
    # observed overlap, not by timing.
    in_flight: Counter[str] = field(default_factory=Counter)
    most_in_flight: Counter[str] = field(default_factory=Counter)
    _gathered: dict[str, int] = field(default_factory=dict)

    def respond(self, name: str, value: Answer) -> None:
        """Answer calls named `name` (a schema name, "text" or "image") with `value`, or with
        what `value(call)` returns."""
        self._answers[name] = value

    def fail(
        self,
        name: str,
        status: int,
        times: int = 1,
        *,
        retry_after: float | None = None,
        protocol: str | None = None,
    ) -> None:
        """The next `times` calls named `name` ("*" = any) get HTTP `status` (with a
        Retry-After header when given; only on one protocol, "openai" or "gemini", if named)."""
        with self._lock:
            self._failures.append(_Failure(name, status, times, retry_after, protocol))

    def gather(self, name: str, count: int) -> None:
        """Calls named `name` wait until `count` of them have been in flight at once (each at
        most GATHER_SECONDS, then it goes on alone: a serial caller is slow, then fails)."""
        self._gathered[name] = count

    def reset(self) -> None:
        with self._lock:
            self.latency = 0.0
            self.calls.clear()
            self.models.clear()
            self.in_flight.clear()
            self.most_in_flight.clear()
            self._gathered.clear()
            self._answers.clear()
            self._failures.clear()

    # --- for the peers ---------------------------------------------------------------

    @staticmethod
    def name_of(call: Call) -> str:
        if call.kind == "structured":
            return call.schema_name or ""
        return "image" if call.kind == "image" else "text"

    @contextmanager
    def flying(self, name: str) -> Iterator[None]:
        """Count a call named `name` in flight for the block."""
        with self._lock:
            self.in_flight[name] += 1
            self.most_in_flight[name] = max(self.most_in_flight[name], self.in_flight[name])
        try:
            yield
        finally:
            with self._lock:
                self.in_flight[name] -= 1

    def gathered(self, name: str) -> bool:
        """Whether calls named `name` may go on: not held, or their gathering was seen."""
        return self.most_in_flight[name] >= self._gathered.get(name, 0)

    def record(self, call: Call) -> _Failure | None:
        """Log the call; the scripted failure it meets, if any."""
        name = self.name_of(call)
        with self._lock:
            self.calls.append(call)
            for failure in self._failures:
                if (
                    failure.times > 0
                    and failure.name in ("*", name)
                    and failure.protocol in (None, call.protocol)
                ):
                    failure.times -= 1
                    return failure
        return None

    def answer(self, call: Call, schema: dict[str, Any] | None) -> Any:
        name = self.name_of(call)
        if name in self._answers:
            value = self._answers[name]
            return value(call) if callable(value) else value
        if call.kind == "structured":
            return sample(schema or {}, schema or {})
        if call.kind == "image":
            return tiny_png()
        return "scripted text"


def sample(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """A value satisfying `schema` (the subset Pydantic emits)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return sample(root.get("$defs", {})[name], root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return sample(options[0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: sample(properties[key], root) for key in schema.get("required", properties)}
    if kind == "array":
        item = schema.get("items", {})
        return [sample(item, root) for _ in range(schema.get("minItems", 1))]
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        length = max(schema.get("minLength", 0), min(1, schema.get("maxLength", 1)))
        return "x" * length
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    return None


_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "someone@example.com",
    "uri": "https://example.com/",
}


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    step = 1 if integer else 0.5
    value: float = 0
    if "minimum" in schema:
        value = max(value, schema["minimum"])
    if "exclusiveMinimum" in schema:
        value = max(value, schema["exclusiveMinimum"] + step)
    if "maximum" in schema:
        value = min(value, schema["maximum"])
    if "exclusiveMaximum" in schema:
        value = min(value, schema["exclusiveMaximum"] - step)
    return int(value) if integer else float(value)


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x80\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
