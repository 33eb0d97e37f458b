"""Header hygiene for proxied calls, both ways. Pure functions: no HTTP client involved.

What reaches an upstream (`outgoing`):
- the caller's headers minus hop-by-hop headers (and any named in `Connection`), minus the
  caller's own credentials and anything it could use to pose as someone else upstream;
- `X-Forwarded-For/Proto/Host` and `X-Request-ID`;
- the caller's identity (`X-User-Id`, `X-User-Email`, `X-Tollhouse-Project`), so the upstream
  can keep its own per-user limits;
- the upstream's configured headers (a service key, a writer's bearer token).

Every value sent must be a valid header value (visible ASCII, space, tab): a client header or
a claim (an IdP e-mail) with a non-ASCII byte or a CR/LF is 400 `invalid_header_value`,
raised before anything is counted or charged — not a 500 from the client library, nor a 503
blaming the upstream.

What comes back (`incoming`): the upstream's headers minus hop-by-hop ones and those we set
ourselves, `Vary` merged into one line without repeats, and a redirect's `Location` mapped into
our own address space (see `proxy_paths.rewrite_location`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tollhouse.kit.errors import BadRequest, TollhouseError

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
    }
)
# The caller's credentials and anything it could use to pose as someone else upstream.
CALLER_ONLY = frozenset(
    {
        "authorization",
        "cookie",
        "x-service-key",
        "x-admin-key",
        "x-publishable-key",
        "x-clerk-token",
        "x-user-token",
        "x-end-user-token",
        "x-gateway-signature",
        "x-gateway-timestamp",
        "x-gateway-metered",
        "x-user-id",
        "x-user-email",
        "x-tollhouse-project",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
        "host",
    }
)
# Set again by our own server on the way out.
RESPONSE_DROPPED = frozenset({"server", "date"})
# Checked with one regex each, not byte by byte: a bearer token and a JWT are ~700 bytes on
# every proxied call.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(rb"[\x20-\x7e\t]*")


class InvalidHeaderValue(BadRequest):
    code = "invalid_header_value"
    message = "A header (or an identity claim sent as one) is not a valid HTTP header value."


class UpstreamRedirectRefused(TollhouseError):
    status_code = 502
    code = "upstream_redirect_refused"
    message = "The upstream service redirected outside its own address space."


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, as the upstream is told."""

    user_id: str | None = None
    email: str | None = None
    project_id: str | None = None


def valid_value(value: bytes) -> bool:
    return _VALUE.fullmatch(value) is not None


def _valid_name(name: bytes) -> bool:
    return _TOKEN.fullmatch(name) is not None


def _named_by_connection(values: Iterable[str]) -> set[str]:
    return {token.strip().lower() for value in values for token in value.split(",") if token}


def _checked(name: str, value: str) -> tuple[str, str]:
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raw = b"\x80"
    if not valid_value(raw):
        raise InvalidHeaderValue(detail={"header": name})
    return name, value


def outgoing(
    raw_headers: Sequence[tuple[bytes, bytes]],
    *,
    client_host: str | None,
    scheme: str,
    request_id: str | None,
    identity: Identity | None,
    injected: Mapping[str, str],
) -> list[tuple[str, str]]:
    """The headers an upstream receives for a caller's request (see the module docstring)."""
    connection = [v.decode("latin-1") for k, v in raw_headers if k.lower() == b"connection"]
    dropped = HOP_BY_HOP | CALLER_ONLY | _named_by_connection(connection)
    headers: list[tuple[str, str]] = []
    chain: str | None = None
    host: str | None = None
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1")
        if not _valid_name(raw_name) or not valid_value(raw_value):
            raise InvalidHeaderValue(detail={"header": name if raw_name.isascii() else None})
        lowered = name.lower()
        value = raw_value.decode("ascii")
        if lowered == "x-forwarded-for":
            chain = value
        elif lowered == "host":
            host = value
        if lowered not in dropped:
            headers.append((name, value))
    if client_host:
        headers.append(("X-Forwarded-For", f"{chain}, {client_host}" if chain else client_host))
    headers.append(("X-Forwarded-Proto", scheme))
    if host:
        headers.append(("X-Forwarded-Host", host))
    if request_id:
        headers.append(("X-Request-ID", request_id))
    if identity is not None:
        claims: list[tuple[str, str | None]] = [
            ("X-User-Id", identity.user_id),
            ("X-User-Email", identity.email),
            ("X-Tollhouse-Project", identity.project_id),
        ]
        headers.extend(_checked(name, value) for name, value in claims if value)
    headers.extend(_checked(name, value) for name, value in injected.items())
    return headers


def merged_vary(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Every `Vary` line folded into one, each field named once (case-insensitively)."""
    names: dict[bytes, bytes] = {}
    first: int | None = None
    kept: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.lower() != b"vary":
            kept.append((name, value))
            continue
        if first is None:
            first = len(kept)
        for field in value.split(b","):
            if field := field.strip():
                names.setdefault(field.lower(), field)
    if first is not None:
        kept.insert(first, (b"vary", b", ".join(names.values())))
    return kept


def incoming(
    raw_headers: Sequence[tuple[bytes, bytes]],
    *,
    location: Callable[[str], str | None] | None = None,
) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers as our client receives them.

    `location` maps a redirect's target into our address space (None: it points elsewhere,
    and the answer is refused with 502 `upstream_redirect_refused`).
    """
    connection = [v.decode("latin-1") for k, v in raw_headers if k.lower() == b"connection"]
    dropped = HOP_BY_HOP | RESPONSE_DROPPED | _named_by_connection(connection)
    headers: list[tuple[bytes, bytes]] = []
    for name, value in raw_headers:
        lowered = name.decode("latin-1").lower()
        if lowered in dropped:
            continue
        if lowered == "location" and location is not None:
            mapped = location(value.decode("latin-1"))
            if mapped is None:
                raise UpstreamRedirectRefused()
            value = mapped.encode("latin-1")
        headers.append((name, value))
    return merged_vary(headers)
