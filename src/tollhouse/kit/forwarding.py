"""The forwarding engine: one pooled keep-alive HTTP/1.1 client (aiohttp) per upstream.

`Upstream.forward(request, outgoing, ...)` sends a prepared request (`prepare`: the method, the
normalised path, the query as sent and the cleaned headers) to `base_url + path` and answers
with the upstream's own status, headers and body: a small one (its Content-Length within
`BUFFERED_BODY_BYTES`) read whole and sent in one piece, any other streamed as it arrives
(nothing decoded), unless the route promises JSON, in which case the (small) body is read and
checked — when the answer carries one: HEAD, 1xx, 204, 304 and redirects pass through
unchecked, and HEAD, 1xx, 204 and 304 answer at once, their connection back in the pool. The
caller's body is read whole when small (`BUFFERED_BODY_BYTES`, and always for GET/HEAD/OPTIONS,
which may be sent twice) and streamed through otherwise, so a 50 MB upload costs no more memory
than 1 kB.

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

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
import anyio
import structlog
from fastapi import Request, Response
from multidict import CIMultiDict
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from yarl import URL

from tollhouse.kit import proxy_headers
from tollhouse.kit.errors import ServiceUnavailable, TollhouseError
from tollhouse.kit.proxy_headers import Identity
from tollhouse.kit.request_context import current_request_id

log = structlog.get_logger("tollhouse.upstreams")

Settle = Callable[[int | None], Awaitable[None]]
# Maps a redirect's Location into our address space: (location, upstream URL) → ours | None.
LocationMap = Callable[[str, str], str | None]

ConnectorFactory = Callable[..., aiohttp.BaseConnector]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
# A write's body up to this size (by its Content-Length) is read and sent in one piece; a
# larger one, or one of unknown length, streams through chunk by chunk (flat memory).
BUFFERED_BODY_BYTES = 64 * 1024
# aiohttp adds these unless told not to; the upstream gets only what the caller sent.
_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})


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
    """One upstream service and its pooled aiohttp client (keep-alive, HTTP/1.1).

    `connector` makes the connection pool: `kit/ssrf.py`'s `public_only_connector` for URLs a
    developer sets (each new connection's addresses checked), aiohttp's own otherwise. The
    client is made on first use (aiohttp needs a running event loop).
    """

    def __init__(
        self, config: UpstreamConfig, *, connector: ConnectorFactory = aiohttp.TCPConnector
    ) -> None:
        self.config = config
        self._base = config.base_url.rstrip("/")
        self._connector = connector
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        # Answers still being relayed: an evicted client closes only once they are done.
        self._open = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled client, made on first use."""
        if self._session is None:
            if self._closed:
                raise RuntimeError(f"The upstream {self.config.name} is closed.")
            t = self.config.timeouts
            connector = self._connector(
                limit=self.config.max_connections,
                limit_per_host=0,
                keepalive_timeout=30.0,
                use_dns_cache=False,  # every new connection resolves (and is checked) again
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # The pool wait counts as connecting; `total` bounds the wait for the headers.
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=t.connect, sock_connect=t.connect, sock_read=t.read
                ),
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                # Only the caller's headers (cleaned) go upstream, none of aiohttp's defaults.
                skip_auto_headers=_AUTO_HEADERS,
            )
        return self._session

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_idle(self) -> None:
        """Until no answer of this upstream is still being relayed."""
        while self._open:
            await self._idle.wait()

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    def url_of(self, outgoing: Outgoing) -> URL:
        target = self._base + outgoing.path + (f"?{outgoing.query}" if outgoing.query else "")
        return URL(target, encoded=True)  # already percent-encoded: sent as it is

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
        content = await _body(request, method)
        url = self.url_of(outgoing)
        upstream = await self._send(method, url, outgoing.headers, content)
        self._open += 1
        self._idle.clear()
        try:
            sent_to = str(url)
            headers = proxy_headers.incoming(
                upstream.raw_headers,
                location=None if location is None else lambda value: location(value, sent_to),
            )
            if promises_json and carries_body(method, upstream.status):
                return await self._json_response(upstream, headers, settle)
            if method == "HEAD" or upstream.status < 200 or upstream.status in (204, 304):
                # Nothing to stream: the connection goes back to the pool now.
                upstream.release()
                self._done()
                await settle(upstream.status)
                response = Response(status_code=upstream.status)
                response.raw_headers = headers
                return response
            length = upstream.content_length
            small = length is not None and length <= BUFFERED_BODY_BYTES
        except BaseException:
            upstream.close()
            self._done()
            raise
        if small:
            # Read whole and sent in one piece: no streaming task group for a small answer.
            body = await self._read(upstream)
            return _Buffered(body, upstream.status, headers, settle)
        response = StreamingResponse(self._relay(upstream, settle), status_code=upstream.status)
        response.raw_headers = headers
        return response

    def _done(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._idle.set()

    async def _send(
        self,
        method: str,
        url: URL,
        headers: list[tuple[str, str]],
        content: bytes | AsyncIterator[bytes],
    ) -> aiohttp.ClientResponse:
        # GET/HEAD/OPTIONS are retried once when the connection could not be made; a body
        # streamed from the caller cannot be sent twice, and writes are never retried.
        attempts = 2 if method in IDEMPOTENT and isinstance(content, bytes) else 1
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            try:
                async with asyncio.timeout(self.config.timeouts.total):
                    return await self.session.request(
                        method,
                        url,
                        headers=CIMultiDict(headers),
                        data=content,
                        allow_redirects=False,
                        compress=None,
                    )
            except aiohttp.ConnectionTimeoutError as exc:
                if not last:
                    continue
                log.warning("upstream_timeout", upstream=self.config.name)
                raise UpstreamTimeout() from exc
            except TimeoutError as exc:  # read timeouts and the total bound
                log.warning("upstream_timeout", upstream=self.config.name)
                raise UpstreamTimeout() from exc
            except aiohttp.ClientConnectorError as exc:
                if not last:
                    continue
                log.warning("upstream_unavailable", upstream=self.config.name, error=str(exc))
                raise UpstreamUnavailable() from exc
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("upstream_failed", upstream=self.config.name, error=type(exc).__name__)
                raise UpstreamUnavailable(detail={"reason": type(exc).__name__}) from exc
        raise AssertionError("unreachable")

    async def _read(self, upstream: aiohttp.ClientResponse) -> bytes:
        """The whole (small) body; the connection back in the pool, or closed if it broke."""
        try:
            return await upstream.read()
        except TimeoutError as exc:
            raise UpstreamTimeout() from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(detail={"reason": type(exc).__name__}) from exc
        finally:
            upstream.release()
            self._done()

    async def _json_response(
        self, upstream: aiohttp.ClientResponse, headers: list[tuple[bytes, bytes]], settle: Settle
    ) -> Response:
        body = await self._read(upstream)
        try:
            json.loads(body)
        except ValueError as exc:
            raise UpstreamMalformed(detail={"status": upstream.status}) from exc
        await settle(upstream.status)
        response = Response(body, status_code=upstream.status)
        response.raw_headers = [
            *[
                (k, v)
                for k, v in headers
                if k.lower() not in (b"content-length", b"content-encoding")
            ],
            (b"content-length", str(len(body)).encode()),
        ]
        return response

    async def _relay(
        self, upstream: aiohttp.ClientResponse, settle: Settle
    ) -> AsyncIterator[bytes]:
        status: int | None = None
        try:
            async for chunk in upstream.content.iter_any():  # as it arrives (SSE)
                yield chunk
            status = upstream.status
        except (GeneratorExit, anyio.get_cancelled_exc_class()):
            # The caller hung up: the upstream did its part.
            status = upstream.status
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("upstream_broke_off", upstream=self.config.name, error=type(exc).__name__)
            raise
        finally:
            # A fully read answer returns its connection to the pool; any other is closed.
            if status is not None and upstream.content.at_eof():
                upstream.release()
            else:
                upstream.close()
            self._done()
            with anyio.CancelScope(shield=True):
                await settle(status)


class _Buffered(Response):
    """A small answer read whole: sent as it came, then settled with its status (the client
    hanging up after the status was sent counts as delivered, as for a streamed answer)."""

    def __init__(
        self, body: bytes, status: int, headers: list[tuple[bytes, bytes]], settle: Settle
    ) -> None:
        super().__init__(body, status_code=status)
        self.raw_headers = headers
        self._settle = settle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._settle(self.status_code)


async def _body(request: Request, method: str) -> bytes | AsyncIterator[bytes]:
    """The caller's body: read whole when it is small (one write upstream, and a GET/HEAD/OPTIONS
    may be sent twice), streamed through unread when it is large or of unknown length."""
    if method in IDEMPOTENT:
        return await request.body()
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= BUFFERED_BODY_BYTES:
        return await request.body()
    return request.stream()
