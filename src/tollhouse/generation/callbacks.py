"""Outgoing callbacks: POST an async generation's result to the caller's `callback_url`.

The URL is checked against SSRF before every attempt, not only when the request was accepted,
so a host that has since started resolving to a private address is not contacted; unless
private addresses are allowed, the client's transport also checks every address at connect
time and connects only to the one it checked (`public_only_transport`). Transient
failures (network errors, timeouts, 429, 5xx) are retried with doubling backoff; any other
answer is final. Logs name the host only: the URL's path and the body may carry the caller's
data.

A callback is a job of its own on the job queue (`enqueue`; payload: the URL, the body and
the attempt settings), so a worker that dies mid-delivery leaves the rest of it to another
worker, which sends it again from the first attempt (a receiver may see a callback twice).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from tollhouse.kit.queue import JobQueue, Payload
from tollhouse.kit.ssrf import UrlNotAllowed, check_public_url, public_only_transport

log = structlog.get_logger("tollhouse.callbacks")

USER_AGENT = "Tollhouse-Callback/1"
CALLBACK_JOB = "callback"


async def validate_callback_url(url: str, *, allow_private: bool) -> None:
    """400 `url_not_allowed` for a callback URL the sender would refuse, so a request with one
    fails before anything is charged."""
    await check_public_url(url, allow_private=allow_private)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


class CallbackSender:
    def __init__(
        self,
        *,
        allow_private: bool,
        max_attempts: int,
        backoff_seconds: float,
        timeout_seconds: float,
        verify: ssl.SSLContext | bool = True,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.allow_private = allow_private
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep
        self._timeout = timeout_seconds
        self._verify = verify
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        """Made on first use: loading the CA bundle costs ~30 ms, and most apps never call back."""
        if self._client is None:
            # Pinned to checked public addresses unless private ones are allowed; with a
            # transport given, httpx reads `verify` from it (and no proxy from the environment).
            transport = None
            if not self.allow_private:
                transport = public_only_transport(verify=self._verify)
            # Redirects are not followed: a 3xx could point anywhere, past the SSRF check.
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                verify=self._verify,
                follow_redirects=False,
                transport=transport,
            )
        return self._client

    def budget_seconds(self) -> float:
        """The longest a delivery may take: every attempt timing out in each phase, and the
        backoffs between attempts."""
        attempts = self.max_attempts
        backoffs = self.backoff_seconds * float(2 ** (attempts - 1) - 1)
        return attempts * (4 * self._timeout + 5) + backoffs

    async def deliver(self, job: Payload) -> bool:
        """The `CALLBACK_JOB` handler: send what `enqueue` queued."""
        return await self.send(
            job["url"],
            job["body"],
            max_attempts=int(job["max_attempts"]),
            backoff_seconds=float(job["backoff_seconds"]),
        )

    async def enqueue(self, queue: JobQueue, url: str, payload: dict[str, Any], key: str) -> None:
        """Queue the delivery (best effort: a queue that refuses it is logged, not raised)."""
        job = {
            "url": url,
            "body": payload,
            "max_attempts": self.max_attempts,
            "backoff_seconds": self.backoff_seconds,
        }
        try:
            await queue.enqueue(CALLBACK_JOB, job, key=key)
        except Exception:  # Redis away, or this callback already queued
            log.exception("callback_enqueue_failed", host=_host(url))

    async def send(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        max_attempts: int | None = None,
        backoff_seconds: float | None = None,
    ) -> bool:
        """True once a 2xx answer came back; False when refused, rejected or out of attempts
        (this sender's attempts and backoff unless the job gave its own)."""
        host = _host(url)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        attempts = max(1, max_attempts or self.max_attempts)
        backoff = self.backoff_seconds if backoff_seconds is None else backoff_seconds
        for attempt in range(1, attempts + 1):
            try:
                await check_public_url(url, allow_private=self.allow_private)
            except UrlNotAllowed:
                log.warning("callback_refused", host=host, attempt=attempt)
                return False
            try:
                response = await self._http().post(url, content=body, headers=headers)
            except httpx.TransportError as exc:  # connect/read errors and timeouts
                outcome: str = type(exc).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    log.info("callback_delivered", host=host, attempt=attempt, status=status)
                    return True
                if not _retryable(status):
                    log.warning("callback_rejected", host=host, attempt=attempt, status=status)
                    return False
                outcome = str(status)
            if attempt == attempts:
                log.warning("callback_failed", host=host, attempts=attempt, outcome=outcome)
                return False
            delay = backoff * 2 ** (attempt - 1)
            log.info("callback_retry", host=host, attempt=attempt, outcome=outcome, delay=delay)
            await self._sleep(delay)
        return False  # unreachable: the last attempt returns above

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
