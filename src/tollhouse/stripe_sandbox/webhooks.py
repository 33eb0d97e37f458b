"""Webhook delivery: each event, signed with its mode's endpoint secret, POSTed as Stripe
does (`Stripe-Signature: t=…,v1=…`, JSON body). One attempt; the outcome is recorded
(`Sandbox.deliveries`, shown on the sandbox's home page) — a sandbox does not retry."""

from __future__ import annotations

import httpx
import structlog

from tollhouse.stripe_sandbox.state import Delivery, Endpoint, Obj, Sandbox
from tollhouse.stripe_sandbox.wire import sign

log = structlog.get_logger("tollhouse.stripe_sandbox")


def webhook_endpoint(sandbox: Sandbox, url: str, secret: str, *, livemode: bool) -> Endpoint:
    """Register where events of one mode go (what `stripe listen --forward-to` does)."""
    endpoint = Endpoint(
        id=f"we_{len(sandbox.endpoints) + 1}", url=url, secret=secret, livemode=livemode
    )
    with sandbox.lock:
        sandbox.endpoints.append(endpoint)
    return endpoint


async def deliver(sandbox: Sandbox, client: httpx.AsyncClient, events: list[Obj]) -> None:
    """POST each event, in order, to every endpoint of its mode."""
    for event in events:
        for endpoint in [e for e in sandbox.endpoints if e.livemode == event["livemode"]]:
            payload, header = sign(event, endpoint.secret)
            outcome = Delivery(event["id"], event["type"], endpoint.url, None)
            try:
                response = await client.post(
                    endpoint.url,
                    content=payload,
                    headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                )
                outcome.status = response.status_code
                if response.status_code >= 300:
                    outcome.error = response.text[:300]
            except httpx.HTTPError as exc:
                outcome.error = f"{type(exc).__name__}: {exc}"
            sandbox.deliveries.appendleft(outcome)
            log.info(
                "stripe_sandbox_webhook",
                event_type=event["type"],
                url=endpoint.url,
                status=outcome.status,
                error=outcome.error,
            )
