"""Work every replica may be handed at once: one Stripe webhook delivered to all three (one
effect), and one generation stream followed from all three (the same frames, to the end)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from cluster_support import (
    PACK,
    PACK_PRICE,
    WEBHOOK_SECRET,
    Cluster,
    assert_audit_clean,
    balance_of,
    funded_user,
    poll,
)
from llm_peer import LLMPeer
from scene_script import QUERY, script_scene
from stripe_peer import StripePeer
from support import SERVICE

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

URLS = {"success_url": "https://app.example/ok", "cancel_url": "https://app.example/no"}
# The step the run is held at (tests/llm_script.py's `gather`) while followers join.
HELD_SCHEMA = "Timeline"
STREAM_SECONDS = 60.0


def _as(user: str) -> dict[str, str]:
    return {**SERVICE, "X-User-ID": user}


async def test_one_stripe_webhook_delivered_to_every_replica_grants_once(
    running: Cluster, stripe_peer_server: StripePeer
) -> None:
    stripe_peer_server.add_price(PACK["price_cents"], price_id=PACK_PRICE)
    async with AsyncExitStack() as stack:
        lb = await stack.enter_async_context(httpx.AsyncClient(base_url=running.url, timeout=30))
        replicas = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
            for url in running.replicas
        ]
        user = await funded_user(lb, f"buyer-{uuid.uuid4().hex[:8]}", 0)
        checkout = await lb.post(
            "/api/v1/billing/stripe/checkout",
            json={"product_id": PACK["id"], **URLS},
            headers=_as(user),
        )
        assert checkout.status_code == 200, checkout.text
        paid = stripe_peer_server.complete_session(checkout.json()["session_id"])
        event = stripe_peer_server.event("checkout.session.completed", paid)
        payload, signature = stripe_peer_server.sign(event, WEBHOOK_SECRET)
        headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
        moves_before = await _moves(lb, user)

        answers = await asyncio.gather(
            *(r.post("/webhook/stripe", content=payload, headers=headers) for r in replicas)
        )

        assert [answer.status_code for answer in answers] == [200, 200, 200], [
            answer.text for answer in answers
        ]
        bodies = sorted(json.dumps(answer.json(), sort_keys=True) for answer in answers)
        assert bodies == [
            '{"idempotent": true, "received": true}',
            '{"idempotent": true, "received": true}',
            '{"received": true}',
        ]
        assert await balance_of(lb, user) == PACK["credits"]
        assert await _moves(lb, user) == [PACK["credits"], *moves_before]  # one grant
        await assert_audit_clean(lb)


async def _moves(client: httpx.AsyncClient, user: str) -> list[int]:
    history = await client.get("/api/v1/credits/history", headers=_as(user))
    assert history.status_code == 200, history.text
    return [row["amount"] for row in history.json()]


async def _frames(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


async def _follow(
    stack: AsyncExitStack, client: httpx.AsyncClient, method: str, url: str, **request: Any
) -> tuple[list[dict[str, Any]], asyncio.Task[None]]:
    """Frames as they arrive (a list that grows), and the task reading them to the end."""
    response = await stack.enter_async_context(client.stream(method, url, **request))
    assert response.status_code == 200, await response.aread()
    frames: list[dict[str, Any]] = []

    async def read() -> None:
        async for frame in _frames(response):
            frames.append(frame)

    return frames, asyncio.create_task(read())


async def test_a_stream_started_on_one_replica_is_followed_from_the_others_to_the_end(
    running: Cluster, llm_peer_server: LLMPeer
) -> None:
    script = llm_peer_server.script
    script.reset()
    script_scene(script)
    # The run waits at its timeline step until a second call of that schema comes (below),
    # so the followers join a run still going, not one already over.
    script.gather(HELD_SCHEMA, 2)
    a, b, c = running.replicas
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
            for url in (a, b, c)
        ]
        user = await funded_user(clients[0], f"streamer-{uuid.uuid4().hex[:8]}", 50)
        on_a, reading_a = await _follow(
            stack,
            clients[0],
            "POST",
            "/api/v1/timepoints/generate/stream",
            json={"query": QUERY},
            headers=_as(user),
        )

        async def held() -> bool:
            return script.in_flight[HELD_SCHEMA] == 1

        await poll(held, STREAM_SECONDS, "the run reached its held step")
        mine = await clients[1].get("/api/v1/users/me/timepoints", headers=_as(user))
        [item] = mine.json()["items"]
        assert item["status"] == "processing"
        followers = []
        for client in clients[1:]:
            url = f"/api/v1/timepoints/{item['id']}/stream"
            followers.append(await _follow(stack, client, "GET", url, headers=_as(user)))

        async def caught_up() -> bool:
            return all(len(frames) == len(on_a) for frames, _ in followers)

        await poll(caught_up, STREAM_SECONDS, "the followers replayed the frames so far")
        so_far = len(on_a)
        async with httpx.AsyncClient(base_url=llm_peer_server.openai_base_url) as peer:
            release = {
                "model": "scripted",
                "messages": [{"role": "user", "content": "release the held step"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": HELD_SCHEMA, "schema": {}},
                },
            }
            assert (await peer.post("/chat/completions", json=release)).status_code == 200
        await asyncio.wait_for(
            asyncio.gather(reading_a, *(task for _, task in followers)), STREAM_SECONDS
        )

    script.reset()
    assert len(on_a) > so_far  # frames came live, after the followers had joined
    assert on_a[-1]["event"] == "done"
    assert on_a[-1]["data"]["status"] == "completed"
    for frames, _ in followers:
        assert frames == on_a
