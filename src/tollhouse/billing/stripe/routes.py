"""Stripe's HTTP surface (thin): Platform API checkout and portal, and the webhook.

- `platform`: `POST /api/create-checkout`, `POST /api/customer-portal` (end user + PK/SK)
- `webhook`:  `POST /webhook/stripe` (Stripe signature; raw body)

Connect's routes are the Developer API's (`tollhouse/console/stripe.py`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from tollhouse.billing.stripe import checkout, signatures, webhooks
from tollhouse.billing.stripe.checkout import Buyer, CheckoutRequest, PortalRequest
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import (
    Caller,
    CallerKind,
    EndUserCaller,
    identity_context,
)
from tollhouse.tenancy.models import Project

platform = APIRouter(tags=["platform"])
webhook = APIRouter(tags=["webhooks"])


async def _buyer(request: Request, session: SessionDep, caller: Caller) -> Buyer:
    assert caller.user is not None
    project = await session.get(Project, caller.project_id)
    assert project is not None
    presented = request.headers.get("x-publishable-key")
    key = presented if caller.kind is CallerKind.PUBLISHABLE_KEY else None
    return Buyer(project=project, user=caller.user, publishable_key=key)


# --- Platform API -------------------------------------------------------------------------


@platform.post("/api/create-checkout")
async def create_checkout(
    request: Request,
    caller: EndUserCaller,
    session: SessionDep,
    stripe: StripeDep,
    body: Annotated[CheckoutRequest | None, Body()] = None,
) -> dict[str, str]:
    buyer = await _buyer(request, session, caller)
    url = await checkout.create_checkout(
        session, stripe, buyer, body or CheckoutRequest(), request.headers.get("origin")
    )
    return {"url": url}


@platform.post("/api/customer-portal")
async def customer_portal(
    request: Request,
    caller: EndUserCaller,
    session: SessionDep,
    stripe: StripeDep,
    body: Annotated[PortalRequest | None, Body()] = None,
) -> dict[str, str]:
    buyer = await _buyer(request, session, caller)
    url = await checkout.portal(
        session, stripe, buyer, body or PortalRequest(), request.headers.get("origin")
    )
    return {"url": url}


# --- webhook ------------------------------------------------------------------------------


@webhook.post("/webhook/stripe")
async def stripe_webhook(
    request: Request, session: SessionDep, stripe: StripeDep
) -> dict[str, Any]:
    settings = identity_context(request).settings
    signature = request.headers.get("stripe-signature")
    verified = signatures.verify_event(settings, await request.body(), signature)
    return await webhooks.receive(session, stripe, verified)
