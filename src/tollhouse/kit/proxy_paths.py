"""One normalised path per proxied request: what we route, price and forward are the same.

A proxy that matches its rules on the raw path while the upstream normalises it (`//index`,
`./index`, `x/..%2Findex` all reach `/index` upstream) charges and authorises one route and
serves another. So a proxied path is parsed once, strictly, from the bytes the client sent
(`scope["raw_path"]`), and anything whose meaning depends on who decodes it is refused with
400 `invalid_path` before anything is charged or forwarded:

- dot segments (`.`, `..`), also percent-encoded (`%2e`, `.%2E`);
- encoded separators and delimiters: `%2F`, `%5C` (and a raw `\\`), `%3F`, `%23`;
- empty segments (`//`), except one trailing slash, which is kept;
- control characters, raw non-ASCII bytes, malformed escapes, invalid UTF-8.

What is forwarded is the canonical encoding of the decoded segments, so an upstream decoding
it gets exactly the segments we decided on. Pure functions: no HTTP library involved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes, urljoin, urlsplit

from tollhouse.kit.errors import BadRequest

# RFC 3986 pchar minus "%": left as they are in the canonical form.
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN_DECODED = re.compile(r"[/\\?#]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidPath(BadRequest):
    code = "invalid_path"
    message = (
        "The path is not allowed: no dot segments, empty segments, encoded slashes, "
        "backslashes, '?' or '#', or control characters."
    )


@dataclass(frozen=True, slots=True)
class ProxyPath:
    """Decoded path segments (never empty, never `.`/`..`) and whether a slash ended it."""

    segments: tuple[str, ...]
    trailing_slash: bool = False

    def after(self, count: int) -> ProxyPath:
        """The path without its first `count` segments (a route's own prefix)."""
        return ProxyPath(self.segments[count:], self.trailing_slash)

    def starts_with(self, prefix: tuple[str, ...]) -> bool:
        return self.segments[: len(prefix)] == prefix

    @property
    def route(self) -> str:
        """The decoded path without a leading slash: what route policies match."""
        return "/".join(self.segments)

    @property
    def encoded(self) -> str:
        """The canonical percent-encoded form, with a leading slash: what is forwarded."""
        path = "/" + "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in self.segments)
        return path + "/" if self.trailing_slash and self.segments else path


def _segment(raw: bytes) -> str:
    if _ESCAPE.search(raw):
        raise InvalidPath(detail={"reason": "malformed percent-escape"})
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPath(detail={"reason": "not UTF-8"}) from None
    if decoded in (".", ".."):
        raise InvalidPath(detail={"reason": "dot segment"})
    if _FORBIDDEN_DECODED.search(decoded):
        raise InvalidPath(detail={"reason": "encoded separator or delimiter"})
    if _CONTROL.search(decoded):
        raise InvalidPath(detail={"reason": "control character"})
    return decoded


def parse(raw_path: bytes) -> ProxyPath:
    """The request's path as sent (no query), parsed under the rules above; InvalidPath (400)."""
    raw_path = raw_path.split(b"?", 1)[0]
    if not raw_path.startswith(b"/") or not raw_path.isascii():
        raise InvalidPath(detail={"reason": "not an absolute ASCII path"})
    if b"\\" in raw_path:
        raise InvalidPath(detail={"reason": "backslash"})
    parts = raw_path[1:].split(b"/")
    trailing = len(parts) > 1 and parts[-1] == b""
    if trailing:
        parts.pop()
    if parts == [b""]:
        return ProxyPath(())
    if b"" in parts:
        raise InvalidPath(detail={"reason": "empty segment"})
    return ProxyPath(tuple(_segment(part) for part in parts), trailing)


def segments_of(prefix: str) -> tuple[str, ...]:
    """A configured prefix ("api/v1", "/files/") as segments, under the same rules."""
    stripped = prefix.strip("/")
    return parse(f"/{stripped}".encode()).segments if stripped else ()


def rewrite_location(location: str, upstream_url: str, base_url: str, our_base: str) -> str | None:
    """A redirect's `Location` in our own address space, or None when it leaves the upstream.

    `upstream_url` is the URL the request was sent to (relative locations resolve against it),
    `base_url` the upstream's base (scheme, host, path prefix) and `our_base` the path that
    maps onto it here (`/api/v1/clockchain`). A location outside `base_url` (another host, or
    above its path) is None: the caller refuses it rather than send the client elsewhere.
    """
    target = urlsplit(urljoin(upstream_url, location))
    base = urlsplit(base_url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        return None
    base_path = base.path.rstrip("/")
    if target.path != base_path and not target.path.startswith(base_path + "/"):
        return None
    try:
        rest = parse((target.path[len(base_path) :] or "/").encode())
    except InvalidPath:
        return None
    rewritten = our_base.rstrip("/") + rest.encoded
    if target.query:
        rewritten += "?" + target.query
    if target.fragment:
        rewritten += "#" + target.fragment
    return rewritten
