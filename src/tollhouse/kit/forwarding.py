"""The forwarding engine: one pooled HTTP/1.1 client per upstream, bodies streamed both ways.

`Upstream.forward(request, outgoing, ...)` sends a prepared request (`prepare`: the method, the
normalised path, the query as sent and the cleaned headers) to `base_url + path` and answers
with the upstream's own status, headers and body, streamed (`aiter_raw`: nothing is decoded or
buffered), unless the route promises JSON, in which case the (small) body is read and checked
— when the answer carries one: HEAD, 1xx, 204, 304 and redirects pass through bodiless.

The rules live beside it, free of any HTTP client: `proxy_paths` (the one normalised path, a
redirect's `Location` mapped into our address space), `proxy_headers` (what is stripped,
added and refused, both ways). This module only moves bytes.

Failures answer in our envelope: refused or unreachable → 503 `upstream_unavailable`, timed
out → 504 `upstream_timeout`, not JSON where JSON is promised → 502 `upstream_malformed`, a
redirect leaving the upstream → 502 `upstream_redirect_refused`. Idempotent methods
(GET/HEAD/OPTIONS) are retried once on a connect error; writes never.

`settle(status)` tells the caller how it went, exactly once, whatever happens: the upstream's
status when its whole answer reached the client (or the client hung up after the status was
sent), None when it did not answer, broke off mid-body, or the call failed on our side (the
client's connection is cut when the status was already sent). Whether that status is worth
paying for is the caller's rule, not the engine's.
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

from tollhouse.kit import proxy_headers
from tollhouse.kit.errors import ServiceUnavailable, TollhouseError
from tollhouse.kit.proxy_headers import Identity
from tollhouse.kit.request_context import current_request_id

log = structlog.get_logger("tollhouse.upstreams")

Settle = Callable[[int | None], Awaitable[None]]
# Maps a redirect's Location into our address space: (location, upstream URL) → ours | None.
LocationMap = Callable[[str, str], str | None]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


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
class UpstreamConfig:
    name: str
    base_url: str
    inject_headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    max_connections: int = 100


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request ready to send: every rule already applied (see `prepare`)."""

    method: str
    # Below the upstream's base URL, percent-encoded, with a leading slash.
    path: str
    # As the client sent it (percent-encoded), without the "?".
    query: str
    headers: list[tuple[str, str]]


def prepare(
    request: Request,
    path: str,
    *,
    identity: Identity | None = None,
    injected: Mapping[str, str] | None = None,
) -> Outgoing:
    """The caller's request bound for `path` upstream; 400 on a header that cannot be sent."""
    client = request.client.host if request.client else None
    headers = proxy_headers.outgoing(
        request.headers.raw,
        client_host=client,
        scheme=request.url.scheme,
        request_id=current_request_id(),
        identity=identity,
        injected=injected or {},
    )
    query = request.scope.get("query_string", b"").decode("latin-1")
    return Outgoing(request.method.upper(), "/" + path.lstrip("/"), query, headers)


def carries_body(method: str, status: int) -> bool:
    """Whether an answer has content to check (HEAD, 1xx, 204, 304 and redirects do not)."""
    return (
        method != "HEAD" and status >= 200 and status not in (204, 304) and not 300 <= status < 400
    )


async def _no_settle(_status: int | None) -> None:
    return None


class _Once:
    """`settle` called exactly once, whichever path ends the call first."""

    def __init__(self, settle: Settle) -> None:
        self._settle: Settle | None = settle

    async def __call__(self, status: int | None) -> None:
        settle, self._settle = self._settle, None
        if settle is not None:
            await settle(status)


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
        outgoing: Outgoing,
        *,
        settle: Settle = _no_settle,
        promises_json: bool = False,
        location: LocationMap | None = None,
    ) -> Response:
        """The upstream's answer to the caller's request, or one of our errors (and settle)."""
        once = _Once(settle)
        try:
            return await self._forward(request, outgoing, once, promises_json, location)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await once(None)
            raise

    async def _forward(
        self,
        request: Request,
        outgoing: Outgoing,
        settle: Settle,
        promises_json: bool,
        location: LocationMap | None,
    ) -> Response:
        method = outgoing.method
        # GET/HEAD/OPTIONS may be sent twice, so their (normally empty) body is read once;
        # every other body streams through unread.
        content: bytes | AsyncIterator[bytes] = (
            await request.body() if method in IDEMPOTENT else request.stream()
        )
        target = outgoing.path + (f"?{outgoing.query}" if outgoing.query else "")
        built = self.client.build_request(method, target, headers=outgoing.headers, content=content)
        upstream = await self._send(built, retry=method in IDEMPOTENT)
        try:
            sent_to = str(built.url)
            headers = proxy_headers.incoming(
                upstream.headers.raw,
                location=None if location is None else lambda value: location(value, sent_to),
            )
            if promises_json and carries_body(method, upstream.status_code):
                return await self._json_response(upstream, headers, settle)
        except BaseException:
            await upstream.aclose()
            raise
        response = StreamingResponse(
            self._relay(upstream, settle), status_code=upstream.status_code
        )
        response.raw_headers = headers
        return response

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
        self, upstream: httpx.Response, headers: list[tuple[bytes, bytes]], settle: Settle
    ) -> Response:
        try:
            body = await upstream.aread()
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(detail={"reason": type(exc).__name__}) from exc
        finally:
            await upstream.aclose()
        try:
            json.loads(body)
        except ValueError as exc:
            raise UpstreamMalformed(detail={"status": upstream.status_code}) from exc
        await settle(upstream.status_code)
        response = Response(body, status_code=upstream.status_code)
        response.raw_headers = [
            *[
                (k, v)
                for k, v in headers
                if k.lower() not in (b"content-length", b"content-encoding")
            ],
            (b"content-length", str(len(body)).encode()),
        ]
        return response

    async def _relay(self, upstream: httpx.Response, settle: Settle) -> AsyncIterator[bytes]:
        status: int | None = None
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
            status = upstream.status_code
        except (GeneratorExit, anyio.get_cancelled_exc_class()):
            # The caller hung up: the upstream did its part.
            status = upstream.status_code
            raise
        except httpx.TransportError as exc:
            log.warning("upstream_broke_off", upstream=self.config.name, error=type(exc).__name__)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
                await settle(status)
