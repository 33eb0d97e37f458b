"""Outgoing callbacks against a real HTTPS server (uvicorn, a self-signed certificate made here):
delivery, retries with backoff, final answers, and SSRF refusals that never reach the server."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import structlog

from callback_receiver import SLOW, Receiver
from tollhouse.generation.callbacks import CallbackSender, validate_callback_url
from tollhouse.kit.ssrf import UrlNotAllowed

pytestmark = pytest.mark.anyio

PAYLOAD = {"id": "tp_1", "status": "completed", "title": "Zürich", "progress": 100}
EXACT_BODY = '{"id":"tp_1","status":"completed","title":"Zürich","progress":100}'.encode()


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


SenderFactory = Callable[..., CallbackSender]


@pytest.fixture
async def make_sender(tls_files: tuple[Path, Path]) -> AsyncIterator[SenderFactory]:
    trust = ssl.create_default_context(cafile=str(tls_files[0]))
    built: list[CallbackSender] = []

    def factory(
        *,
        sleep: FakeSleep,
        allow_private: bool = True,
        max_attempts: int = 4,
        timeout_seconds: float = 5.0,
    ) -> CallbackSender:
        sender = CallbackSender(
            allow_private=allow_private,
            max_attempts=max_attempts,
            backoff_seconds=0.5,
            timeout_seconds=timeout_seconds,
            verify=trust,
            sleep=sleep,
        )
        built.append(sender)
        return sender

    yield factory
    for sender in built:
        await sender.close()


# Delivery and retries


async def test_delivered_once_with_the_exact_body_and_headers(
    receiver: Receiver, make_sender: SenderFactory
) -> None:
    sleep = FakeSleep()
    sender = make_sender(sleep=sleep)
    with structlog.testing.capture_logs() as logs:
        assert await sender.send(receiver.url(path="/hooks/gen?token=abc"), PAYLOAD) is True
    [seen] = receiver.seen
    assert seen.path == "/hooks/gen"
    assert seen.body == EXACT_BODY
    assert seen.headers["user-agent"] == "Tollhouse-Callback/1"
    assert seen.headers["content-type"] == "application/json"
    assert sleep.delays == []
    # The log names the host, never the path, query or body.
    assert [entry["event"] for entry in logs] == ["callback_delivered"]
    assert logs[0]["host"] == "127.0.0.1"
    assert "token" not in repr(logs)
    assert "Zürich" not in repr(logs)


@pytest.mark.parametrize("transient", [503, 429])
async def test_transient_failures_are_retried_with_backoff(
    receiver: Receiver, make_sender: SenderFactory, transient: int
) -> None:
    receiver.reset(transient, transient, 200)
    sleep = FakeSleep()
    assert await make_sender(sleep=sleep).send(receiver.url(), PAYLOAD) is True
    assert len(receiver.seen) == 3
    assert all(seen.body == EXACT_BODY for seen in receiver.seen)
    assert sleep.delays == [0.5, 1.0]


async def test_server_errors_forever_give_up_after_max_attempts(
    receiver: Receiver, make_sender: SenderFactory
) -> None:
    receiver.reset(*[500] * 10)
    sleep = FakeSleep()
    with structlog.testing.capture_logs() as logs:
        assert await make_sender(sleep=sleep, max_attempts=4).send(receiver.url(), PAYLOAD) is False
    assert len(receiver.seen) == 4
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert logs[-1]["event"] == "callback_failed"


@pytest.mark.parametrize("final", [404, 400, 410, 302])
async def test_other_answers_are_final(
    receiver: Receiver, make_sender: SenderFactory, final: int
) -> None:
    receiver.reset(final)
    sleep = FakeSleep()
    assert await make_sender(sleep=sleep).send(receiver.url(), PAYLOAD) is False
    assert len(receiver.seen) == 1  # a redirect is not followed either
    assert sleep.delays == []


async def test_timeouts_are_retried(receiver: Receiver, make_sender: SenderFactory) -> None:
    receiver.reset(SLOW, 200)
    sleep = FakeSleep()
    sender = make_sender(sleep=sleep, timeout_seconds=0.1)
    assert await sender.send(receiver.url(), PAYLOAD) is True
    assert len(receiver.seen) == 2
    assert sleep.delays == [0.5]


async def test_connection_errors_are_retried(make_sender: SenderFactory) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleep = FakeSleep()
    sender = make_sender(sleep=sleep, max_attempts=3)
    assert await sender.send(f"https://127.0.0.1:{port}/hook", PAYLOAD) is False
    assert sleep.delays == [0.5, 1.0]


# Refusals: never contacted


async def test_plain_http_is_refused_without_a_request(
    receiver: Receiver, make_sender: SenderFactory
) -> None:
    sleep = FakeSleep()
    with structlog.testing.capture_logs() as logs:
        sent = await make_sender(sleep=sleep).send(f"http://127.0.0.1:{receiver.port}/", PAYLOAD)
    assert sent is False
    assert receiver.seen == []
    assert sleep.delays == []
    assert [entry["event"] for entry in logs] == ["callback_refused"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_private_addresses_are_refused_unless_allowed(
    receiver: Receiver, make_sender: SenderFactory, host: str
) -> None:
    sleep = FakeSleep()
    sender = make_sender(sleep=sleep, allow_private=False)
    assert await sender.send(receiver.url(host=host), PAYLOAD) is False
    assert receiver.seen == []
    assert sleep.delays == []


async def test_validate_callback_url() -> None:
    await validate_callback_url("https://127.0.0.1:1/hook", allow_private=True)
    await validate_callback_url("https://93.184.215.14/hook", allow_private=False)
    for url in ("http://example.com/hook", "https://user:pw@example.com/", "not a url"):
        with pytest.raises(UrlNotAllowed):
            await validate_callback_url(url, allow_private=True)
    with pytest.raises(UrlNotAllowed):
        await validate_callback_url("https://10.0.0.8/hook", allow_private=False)
    with pytest.raises(UrlNotAllowed):
        await validate_callback_url("https://localhost/hook", allow_private=False)
