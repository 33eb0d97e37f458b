"""The forwarding engine: one pooled HTTP/1.1 client per upstream, bodies streamed both ways.

`Upstream.forward(request, path, ...)` sends the caller's request on to `base_url + path` and
answers with the upstream's own status, headers and body, streamed (`aiter_raw`: nothing is
decoded or buffered), unless the route promises JSON, in which case the (small) body is read
and checked. What reaches the upstream:

- the caller's headers minus hop-by-hop headers (and any named in `Connection`), minus the
  caller's own credentials (keys, tokens, cookies, identity headers it could spoof);
- `X-Forwarded-For/Proto/Host` and `X-Request-ID`;
- the upstream's configured headers (e.g. `X-Service-Key`) and, for a known caller,
  `X-User-Id` / `X-User-Email`.

Failures answer in our envelope: refused or unreachable → 503 `upstream_unavailable`, timed
out → 504 `upstream_timeout`, not JSON where JSON is promised → 502 `upstream_malformed`.
Idempotent methods (GET/HEAD/OPTIONS) are retried once on a connect error; writes never.

`settle(ok)` tells the caller how it went, exactly once: ok when the upstream answered below
500 and the whole body went through; not ok when it did not answer, answered 5xx or broke off
mid-body (the client's connection is then cut: the status was already sent).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import anyio
import httpx
import structlog
from fastapi import Request, Response
from starlette.responses import StreamingResponse

from tollhouse.kit.errors import ServiceUnavailable, TollhouseError
from tollhouse.kit.request_context import current_request_id

log = structlog.get_logger("tollhouse.upstreams")

Settle = Callable[[bool], Awaitable[None]]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
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
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
        "host",
    }
)
# Set again by our own server on the way out.
RESPONSE_DROPPED = frozenset({"server", "date"})


class UpstreamUnavailable(ServiceUnavailable):
    code = "upstream_unavailable"
    message = "The upstream service is unavailable."


class UpstreamTimeout(TollhouseError):
    status_code = 504
    code = "upstream_timeout"
    message = "The upstream service did not answer in time."


class UpstreamMalformed(TollhouseError):
    status_code = 502
    code = "upstream_malformed"
    message = "The upstream service returned a malformed response."


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0
    # Until the upstream's status line and headers arrive (a stream may then run longer).
    total: float = 60.0


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    email: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    base_url: str
    inject_headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    max_connections: int = 100


def _dropped_by_connection(headers: Mapping[str, str] | httpx.Headers) -> set[str]:
    named = headers.get("connection") or ""
    return {token.strip().lower() for token in named.split(",") if token.strip()}


def request_headers(
    request: Request, injected: Mapping[str, str], identity: Identity | None
) -> list[tuple[str, str]]:
    """What the upstream sees: see the module docstring."""
    dropped = HOP_BY_HOP | CALLER_ONLY | _dropped_by_connection(request.headers)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in dropped]
    client = request.client.host if request.client else None
    chain = request.headers.get("x-forwarded-for")
    if client:
        headers.append(("X-Forwarded-For", f"{chain}, {client}" if chain else client))
    headers.append(("X-Forwarded-Proto", request.url.scheme))
    if host := request.headers.get("host"):
        headers.append(("X-Forwarded-Host", host))
    if request_id := current_request_id():
        headers.append(("X-Request-ID", request_id))
    if identity is not None:
        headers.append(("X-User-Id", identity.user_id))
        if identity.email:
            headers.append(("X-User-Email", identity.email))
    headers.extend(injected.items())
    return headers


def response_headers(upstream: httpx.Response) -> list[tuple[bytes, bytes]]:
    dropped = HOP_BY_HOP | RESPONSE_DROPPED | _dropped_by_connection(upstream.headers)
    return [(k, v) for k, v in upstream.headers.raw if k.decode("latin-1").lower() not in dropped]


async def _no_settle(_ok: bool) -> None:
    return None


class Upstream:
    """One upstream service and its pooled client."""

    def __init__(
        self, config: UpstreamConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        t = config.timeouts
        self.client = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
                keepalive_expiry=30.0,
            ),
            http1=True,
            http2=False,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def forward(
        self,
        request: Request,
        path: str,
        *,
        identity: Identity | None = None,
        settle: Settle = _no_settle,
        promises_json: bool = False,
    ) -> Response:
        """The upstream's answer to the caller's request, or one of our errors (and settle)."""
        method = request.method.upper()
        # GET/HEAD/OPTIONS may be sent twice, so their (normally empty) body is read once;
        # every other body streams through unread.
        content: bytes | AsyncIterator[bytes] = (
            await request.body() if method in IDEMPOTENT else request.stream()
        )
        outgoing = self.client.build_request(
            method,
            "/" + path.lstrip("/"),
            params=request.url.query or None,
            headers=request_headers(request, self.config.inject_headers, identity),
            content=content,
        )
        try:
            upstream = await self._send(outgoing, retry=method in IDEMPOTENT)
        except TollhouseError:
            await settle(False)
            raise
        answered = upstream.status_code < 500
        if promises_json:
            return await self._json_response(upstream, answered, settle)
        return _streamed(self._relay(upstream, answered, settle), upstream)

    async def _send(self, outgoing: httpx.Request, *, retry: bool) -> httpx.Response:
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                with anyio.fail_after(self.config.timeouts.total):
                    return await self.client.send(outgoing, stream=True)
            except (TimeoutError, httpx.TimeoutException) as exc:
                if retry and attempt + 1 < attempts and isinstance(exc, httpx.ConnectTimeout):
                    continue
                log.warning("upstream_timeout", upstream=self.config.name)
                raise UpstreamTimeout() from exc
            except httpx.ConnectError as exc:
                if attempt + 1 < attempts:
                    continue
                log.warning("upstream_unavailable", upstream=self.config.name)
                raise UpstreamUnavailable() from exc
            except httpx.TransportError as exc:
                log.warning("upstream_failed", upstream=self.config.name, error=type(exc).__name__)
                raise UpstreamUnavailable(detail={"reason": type(exc).__name__}) from exc
        raise AssertionError("unreachable")

    async def _json_response(
        self, upstream: httpx.Response, answered: bool, settle: Settle
    ) -> Response:
        try:
            body = await upstream.aread()
        except httpx.TimeoutException as exc:
            await settle(False)
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            await settle(False)
            raise UpstreamUnavailable(detail={"reason": type(exc).__name__}) from exc
        finally:
            await upstream.aclose()
        try:
            json.loads(body)
        except ValueError as exc:
            await settle(False)
            raise UpstreamMalformed(detail={"status": upstream.status_code}) from exc
        await settle(answered)
        response = Response(body, status_code=upstream.status_code)
        kept = [(k, v) for k, v in response_headers(upstream) if k.lower() != b"content-encoding"]
        response.raw_headers = [
            *[(k, v) for k, v in kept if k.lower() != b"content-length"],
            (b"content-length", str(len(body)).encode()),
        ]
        return response

    async def _relay(
        self, upstream: httpx.Response, answered: bool, settle: Settle
    ) -> AsyncIterator[bytes]:
        ok = False
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
            ok = answered
        except (GeneratorExit, anyio.get_cancelled_exc_class()):
            # The caller hung up: the upstream did its part.
            ok = answered
            raise
        except httpx.TransportError as exc:
            log.warning("upstream_broke_off", upstream=self.config.name, error=type(exc).__name__)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
                await settle(ok)


def _streamed(body: AsyncIterator[bytes], upstream: httpx.Response) -> StreamingResponse:
    response = StreamingResponse(body, status_code=upstream.status_code)
    response.raw_headers = response_headers(upstream)
    return response
