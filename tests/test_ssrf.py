"""Connections pinned to the addresses the SSRF check approved (`public_only_transport`):
refusals that never reach the local server, DNS rebinding between check and connect, TLS still
verified for the host name, and the clients built on it (callbacks, developers' upstreams)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpcore
import httpx
import pytest
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from callback_receiver import Receiver, self_signed
from support import in_thread
from tollhouse.generation import callbacks
from tollhouse.generation.callbacks import CallbackSender
from tollhouse.kit.forwarding import Timeouts, Upstream, UpstreamUnavailable, prepare
from tollhouse.kit.ssrf import (
    PublicOnlyBackend,
    PublicOnlyConnector,
    PublicOnlyResolver,
    check_public_url,
    public_only_connector,
    public_only_transport,
)
from tollhouse.upstreams.context import UpstreamContext, UpstreamPool

pytestmark = pytest.mark.anyio

PUBLIC = "93.184.216.34"  # a public address (example.com's), never contacted here


@dataclass
class Recorder:
    """A local server that records who reached it."""

    url: str = ""
    seen: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def handle(self, request: Request) -> Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/stream":  # no Content-Length: relayed as it arrives

            async def chunks() -> AsyncIterator[bytes]:
                yield b"ok"

            return StreamingResponse(chunks())
        return Response("ok")


def _serve(recorder: Recorder, **config: Any) -> Iterator[Recorder]:
    app = Starlette(routes=[Route("/{path:path}", recorder.handle, methods=["GET", "POST"])])
    with in_thread(app, "a recording server", **config) as url:
        recorder.url = url
        yield recorder


@pytest.fixture(scope="module")
def plain_server() -> Iterator[Recorder]:
    yield from _serve(Recorder())


@pytest.fixture
def plain(plain_server: Recorder) -> Recorder:
    plain_server.seen.clear()
    return plain_server


@pytest.fixture(scope="module")
def named_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # The DNS name only, no IP address: reaching it by IP must fail verification.
    return self_signed(tmp_path_factory.mktemp("named-tls"), [x509.DNSName("callback.test")])


@pytest.fixture(scope="module")
def tls_server(named_tls: tuple[Path, Path]) -> Iterator[Recorder]:
    certfile, keyfile = named_tls
    yield from _serve(Recorder(), ssl_certfile=str(certfile), ssl_keyfile=str(keyfile))


class Resolver:
    """A scripted resolver: `answers[host]` is a list of answers, the last one repeated."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        script = self.answers[host]
        return script.pop(0) if len(script) > 1 else script[0]


def _loopback_is_public(address: str) -> bool:
    return address == "127.0.0.1"


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["localhost", "10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]"]
)
async def test_private_addresses_are_refused_at_connect(plain: Recorder, host: str) -> None:
    async with httpx.AsyncClient(transport=public_only_transport()) as client:
        with pytest.raises(httpx.ConnectError, match="not a public address"):
            await client.get(f"http://{host}:{plain.port}/hit", timeout=2)
    assert plain.seen == []


async def test_unix_sockets_are_refused() -> None:
    backend = PublicOnlyBackend()
    with pytest.raises(httpcore.ConnectError, match="Unix socket"):
        await backend.connect_unix_socket("/tmp/anything.sock")
    with pytest.raises(ValueError, match="Unix socket"):
        public_only_transport(uds="/tmp/anything.sock")
    with pytest.raises(ValueError, match="proxy"):
        public_only_transport(proxy="http://proxy.example:3128")


async def test_one_private_answer_among_public_ones_is_refused(plain: Recorder) -> None:
    resolve = Resolver({"mixed.test": [[PUBLIC, "127.0.0.1"]]})
    transport = public_only_transport(network_backend=PublicOnlyBackend(resolve=resolve))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match=r"127\.0\.0\.1 is not a public address"):
            await client.get(f"http://mixed.test:{plain.port}/hit")
    assert plain.seen == []


async def test_dns_rebinding_between_check_and_connect_is_refused(
    plain: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configuration-time check sees a public address; by the time the client connects,
    the name resolves to loopback: the connection is refused, the local server sees nothing."""
    answers = iter([PUBLIC, "127.0.0.1"])

    async def rebinding(host: str, port: int, **_: Any) -> list[Any]:
        assert host == "rebind.test"
        address = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(anyio, "getaddrinfo", rebinding)
    url = f"https://rebind.test:{plain.port}/hit"
    await check_public_url(url, allow_private=False)  # passes: the public answer
    async with httpx.AsyncClient(transport=public_only_transport()) as client:
        with pytest.raises(httpx.ConnectError, match="not a public address"):
            await client.get(url.replace("https", "http"))  # the local server speaks http
    assert plain.seen == []


# --- what is allowed ----------------------------------------------------------------------


async def test_pinned_connection_verifies_tls_for_the_host_name(
    tls_server: Recorder, named_tls: tuple[Path, Path]
) -> None:
    """callback.test → 127.0.0.1 (treated as public here): the client connects to the pinned
    address and TLS verifies the certificate, issued for callback.test only, by name (SNI)."""
    resolve = Resolver({"callback.test": [["127.0.0.1"]]})
    backend = PublicOnlyBackend(resolve=resolve, is_public=_loopback_is_public)
    trust = ssl.create_default_context(cafile=str(named_tls[0]))
    transport = public_only_transport(network_backend=backend, verify=trust)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"https://callback.test:{tls_server.port}/hook")
        assert response.status_code == 200
        assert response.text == "ok"
        stream = response.extensions["network_stream"]
        assert stream.get_extra_info("server_addr")[0] == "127.0.0.1"
        # The certificate holds no IP address: reaching the same server by address fails,
        # so the success above was verified against the name.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://127.0.0.1:{tls_server.port}/hook")
    assert resolve.asked == ["callback.test"]
    assert tls_server.seen == ["POST /hook"]


async def test_every_approved_address_is_tried_in_order(plain: Recorder) -> None:
    # 127.0.0.2 refuses (nothing listens there on this port); 127.0.0.1 answers.
    resolve = Resolver({"two.test": [["127.0.0.2", "127.0.0.1"]]})
    backend = PublicOnlyBackend(resolve=resolve, is_public=lambda a: a.startswith("127."))
    transport = public_only_transport(network_backend=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"http://two.test:{plain.port}/hit")
    assert response.status_code == 200
    assert plain.seen == ["GET /hit"]


def test_the_transport_pool_is_replaced() -> None:
    """`public_only_transport` sets httpx's private `_pool`: fails if httpx stops using it."""
    plain_transport = httpx.AsyncHTTPTransport()
    assert isinstance(plain_transport._pool, httpcore.AsyncConnectionPool)
    backend = PublicOnlyBackend()
    guarded = public_only_transport(network_backend=backend, http2=True)
    assert guarded._pool is not None
    assert guarded._pool._network_backend is backend
    assert guarded._pool._http2 is True


# --- the clients built on it ----------------------------------------------------------------


async def test_callback_sender_is_pinned_even_without_the_check(
    receiver: Receiver, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_check(url: str, *, allow_private: bool) -> None:
        return None

    monkeypatch.setattr(callbacks, "check_public_url", no_check)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    sender = CallbackSender(
        allow_private=False,
        max_attempts=2,
        backoff_seconds=0.1,
        timeout_seconds=2,
        verify=ssl.create_default_context(cafile=str(tls_files[0])),
        sleep=sleep,
    )
    try:
        assert await sender.send(receiver.url("localhost"), {"id": "tp_1"}) is False
        assert await sender.send(receiver.url("127.0.0.1"), {"id": "tp_1"}) is False
    finally:
        await sender.close()
    assert receiver.seen == []
    assert delays == [0.1, 0.1]  # connect errors are retried, then given up


async def test_callback_sender_allowing_private_still_delivers(
    receiver: Receiver, tls_files: tuple[Path, Path]
) -> None:
    sender = CallbackSender(
        allow_private=True,
        max_attempts=1,
        backoff_seconds=0.1,
        timeout_seconds=2,
        verify=ssl.create_default_context(cafile=str(tls_files[0])),
    )
    try:
        assert await sender.send(receiver.url("localhost"), {"id": "tp_1"}) is True
    finally:
        await sender.close()
    assert len(receiver.seen) == 1


async def _closed(upstream: Upstream, within: float = 20.0) -> bool:
    """Whether `upstream` is closed within `within` seconds (it is closed in the background)."""
    for _ in range(int(within / 0.01)):
        if upstream.closed:
            return True
        await asyncio.sleep(0.01)
    return upstream.closed


def _get(path: str) -> Request:
    """A caller's GET as the forwarding engine receives it."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"tollhouse.test")],
        "client": ("127.0.0.1", 5000),
        "server": ("tollhouse.test", 80),
        "scheme": "http",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    return Request(scope, receive)


async def test_developer_origins_are_bounded_least_recently_used_first() -> None:
    pool = UpstreamPool(Timeouts(), max_origins=2, grace_seconds=0)
    context = UpstreamContext(settings=None, clockchain=None, platform=pool)  # type: ignore[arg-type]
    try:
        a = context.platform.for_origin("https://a.example/x")
        b = context.platform.for_origin("https://b.example/y")
        assert context.platform.for_origin("https://a.example/z") is a  # a is now most recent
        c = context.platform.for_origin("https://c.example/")
        assert await _closed(b)
        assert not a.closed
        assert not c.closed
        d = context.platform.for_origin("https://d.example/")
        assert await _closed(a)
        assert context.platform.for_origin("https://a.example/") is not a
        assert await _closed(c)
        assert not d.closed
    finally:
        await context.close()
    assert d.closed


async def test_an_evicted_origin_closes_only_after_its_responses(plain: Recorder) -> None:
    pool = UpstreamPool(Timeouts(), allow_private=True, max_origins=1, grace_seconds=0)
    try:
        first = pool.for_origin(plain.url)
        request = _get("/stream")
        response = await first.forward(request, prepare(request, "/stream"))
        assert isinstance(response, StreamingResponse)
        pool.for_origin("https://other.example/")  # evicts `first` while its answer is open
        assert not await _closed(first, within=0.2)
        assert [chunk async for chunk in response.body_iterator] == [b"ok"]
        assert await _closed(first)
    finally:
        await pool.close()
    assert plain.seen == ["GET /stream"]


async def test_a_small_answer_is_read_whole_and_frees_its_origin_at_once(
    plain: Recorder,
) -> None:
    pool = UpstreamPool(Timeouts(), allow_private=True, max_origins=1, grace_seconds=0)
    try:
        first = pool.for_origin(plain.url)
        request = _get("/s")
        response = await first.forward(request, prepare(request, "/s"))
        assert not isinstance(response, StreamingResponse)
        assert response.body == b"ok"
        pool.for_origin("https://other.example/")  # nothing of `first` is still open
        assert await _closed(first)
    finally:
        await pool.close()
    assert plain.seen == ["GET /s"]


async def test_developer_upstreams_are_pinned_unless_private_is_allowed(plain: Recorder) -> None:
    guarded = UpstreamPool(Timeouts())
    try:
        upstream = guarded.for_origin(plain.url)
        with pytest.raises(aiohttp.ClientConnectorError, match="not a public address"):
            await upstream.session.get(f"{plain.url}/hit")
        request = _get("/hit")
        with pytest.raises(UpstreamUnavailable):
            await upstream.forward(request, prepare(request, "/hit"))
    finally:
        await guarded.close()
    assert plain.seen == []


# --- the forwarding engine's connector (aiohttp) ----------------------------------------------


@pytest.mark.parametrize(
    "host", ["localhost", "10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]"]
)
async def test_the_engine_refuses_private_addresses_at_connect(plain: Recorder, host: str) -> None:
    async with aiohttp.ClientSession(connector=public_only_connector()) as session:
        with pytest.raises(aiohttp.ClientConnectorError, match="not a public address"):
            await session.get(f"http://{host}:{plain.port}/hit")
    assert plain.seen == []


async def test_the_engine_refuses_dns_rebinding_at_every_connect(plain: Recorder) -> None:
    """The first connection reaches the public answer; the name then rebinds to a private
    address: the next connection is refused, never reaching the local server."""
    resolve = Resolver({"rebind.test": [["127.0.0.1"], ["10.0.0.7"]]})
    resolver = PublicOnlyResolver(resolve=resolve, is_public=_loopback_is_public)
    connector = PublicOnlyConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"http://rebind.test:{plain.port}/first") as first:
            assert first.status == 200
        with pytest.raises(aiohttp.ClientConnectorError, match=r"10\.0\.0\.7 is not a public"):
            await session.get(f"http://rebind.test:{plain.port}/second")
    assert resolve.asked == ["rebind.test", "rebind.test"]
    assert plain.seen == ["GET /first"]


async def test_the_engine_verifies_tls_by_name_on_the_pinned_address(
    tls_server: Recorder, named_tls: tuple[Path, Path]
) -> None:
    """callback.test → 127.0.0.1 (treated as public here): the connection goes to the checked
    address and TLS verifies the certificate, issued for callback.test only, by name."""
    resolve = Resolver({"callback.test": [["127.0.0.1"]]})
    resolver = PublicOnlyResolver(resolve=resolve, is_public=_loopback_is_public)
    trust = ssl.create_default_context(cafile=str(named_tls[0]))
    connector = PublicOnlyConnector(resolver=resolver, ssl=trust)
    tls_server.seen.clear()
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(f"https://callback.test:{tls_server.port}/hook") as response:
            # callback.test exists only in the scripted resolver: reached through its answer.
            assert response.status == 200
            assert await response.text() == "ok"
        # The certificate holds no IP address: by address (treated as public) it fails.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://127.0.0.1:{tls_server.port}/hook")
    assert resolve.asked == ["callback.test"]
    assert tls_server.seen == ["POST /hook"]


def test_the_connector_still_resolves_through_the_overridden_method() -> None:
    """`PublicOnlyConnector` checks IP literals in aiohttp's private `_resolve_host`: fails if
    aiohttp stops resolving there."""
    assert "_resolve_host" in vars(aiohttp.TCPConnector)
    assert "_resolve_host" in vars(PublicOnlyConnector)
