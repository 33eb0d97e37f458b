"""The tests' Stripe: the product's sandbox (`tollhouse.stripe_sandbox`) in a thread, with
the few helpers tests need on top (what was posted, hand-made events delivered to an
in-process client).

Its fixtures (`stripe_peer`, `stripe_peer_server`) are registered for every test module by
`pytest_plugins` in conftest.py; then:

    stripe_peer.base_url                  # STRIPE_API_BASE and STRIPE_CONNECT_BASE
    stripe_peer.requests                  # [Recorded(method, path, form, account, api_key)]
    stripe_peer.posted("/v1/checkout/sessions")  # recorded requests to a path
    stripe_peer.issue_code()              # (OAuth code, acct_…) for /oauth/token
    stripe_peer.complete_session(id)      # paid; subscription mode makes a subscription,
                                          # payment mode a payment intent and its charge
    stripe_peer.add_price(499, interval=None)   # a product and price on the operator's account
    stripe_peer.refunded_charge(session_id)     # refund a paid session: its `charge` object
    stripe_peer.update_subscription(id, status=…, cancel_at_period_end=…)
    stripe_peer.event(type, obj, account=…)  # an event dict
    stripe_peer.sign(event, secret)       # (payload bytes, Stripe-Signature header)
    await stripe_peer.deliver(client, event, secret)  # POST it, signed, to /webhook/stripe

This peer has no webhook endpoints: tests deliver the events they mean to, when they mean to.
Tests of the sandbox as a product (`STRIPE_SANDBOX=1`, automatic delivery) are in
`test_stripe_sandbox.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support import in_thread
from tollhouse.stripe_sandbox.api import sandbox_app
from tollhouse.stripe_sandbox.state import Recorded, Sandbox
from tollhouse.stripe_sandbox.wire import sign


class StripePeer(Sandbox):
    sign = staticmethod(sign)

    def posted(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path and r.method == "POST"]

    async def deliver(
        self, client: httpx.AsyncClient, event: dict[str, Any], secret: str
    ) -> httpx.Response:
        """POST `event` to our `/webhook/stripe`, signed as Stripe signs it."""
        payload, header = sign(event, secret)
        return await client.post(
            "/webhook/stripe",
            content=payload,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )


@pytest.fixture(scope="session")
def stripe_peer_server() -> Iterator[StripePeer]:
    peer = StripePeer()
    with in_thread(sandbox_app(peer, httpx.AsyncClient()), "the local Stripe peer") as url:
        peer.base_url = url
        yield peer


@pytest.fixture
def stripe_peer(stripe_peer_server: StripePeer) -> StripePeer:
    """The session's local Stripe, emptied for this test."""
    stripe_peer_server.reset()
    return stripe_peer_server
