"""`POST /webhook/stripe`: verify, record in the inbox, handle — in one transaction.

1. The signature is checked by the SDK (`WebhookSignature.verify_header`) with the test
   secret, then the live one; nothing is stored for a missing or bad signature (400).
2. `inbox.first_delivery` inserts `(stripe, event.id)` first: a duplicate — even ten
   concurrent ones — finds the row and answers `{received, idempotent}` with no effect.
3. The handler runs in the same transaction; when it fails the inbox row rolls back with it
   and Stripe's retry is handled afresh.

An event belongs to the project named by `metadata.projectId` (or to the project of the
subscription row it names), and only if the event's mode is the project's and its connected
account (`event.account`) is the one that project's platform connected. Anything else is
recorded without effect. One-off (cart) sessions are handed to `billing.cart`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing import inbox, platform_plan
from tollhouse.billing.gateway import stripe_purchases
from tollhouse.billing.stripe import connect
from tollhouse.billing.stripe import subscriptions as subs
from tollhouse.billing.stripe.client import StripeGateway
from tollhouse.billing.stripe.signatures import VerifiedEvent
from tollhouse.identity.models import User
from tollhouse.tenancy.models import Project

log = structlog.get_logger("tollhouse.stripe")

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_failed"})


@dataclass(frozen=True, slots=True)
class Target:
    """The project an event was verified to belong to, and the account to re-read on."""

    project: Project
    account_id: str | None


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    found = obj.get("metadata")
    if not found:  # invoices carry their subscription's metadata here (newer API versions)
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        found = details.get("metadata") or obj.get("subscription_details", {}).get("metadata")
    return found if isinstance(found, dict) else {}


def _subscription_id(event_type: str, obj: dict[str, Any]) -> str | None:
    if event_type in SUBSCRIPTION_EVENTS:
        return subs.stripe_id(obj.get("id"))
    found = subs.stripe_id(obj.get("subscription"))
    if found is None:
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        found = subs.stripe_id(details.get("subscription"))
    return found


async def _target(
    session: AsyncSession, verified: VerifiedEvent, obj: dict[str, Any], sub_id: str | None
) -> Target | None:
    event = verified.event
    project_id = _metadata(obj).get("projectId")
    if not isinstance(project_id, str) and sub_id is not None:
        row = await subs.subscription_row(session, sub_id)
        project_id = row.project_id if row is not None else None
    if not isinstance(project_id, str):
        return None
    project = await session.get(Project, project_id)
    if project is None or project.mode != verified.mode:
        log.warning("stripe_event_project_unknown", event_id=event["id"])
        return None
    account = event.get("account")
    found = await connect.connection(session, project.platform_id, project.mode)
    if account != (found.account_id if found is not None else None):
        log.warning("stripe_event_account_mismatch", event_id=event["id"])
        return None
    return Target(project, account)


def _summary(event: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard shows: ids, amounts, statuses — never customer details."""
    summary: dict[str, Any] = {"object": obj.get("object"), "id": obj.get("id")}
    for key in ("mode", "status", "amount_total", "amount_paid", "currency"):
        if obj.get(key) is not None:
            summary[key] = obj[key]
    summary["livemode"] = bool(event.get("livemode"))
    summary["created"] = event.get("created")
    return summary


async def _user_for(
    session: AsyncSession, project: Project, obj: dict[str, Any]
) -> uuid.UUID | None:
    """The buyer: our id from client_reference_id, else metadata.userId (external id)."""
    reference = obj.get("client_reference_id")
    if isinstance(reference, str):
        try:
            user_id = uuid.UUID(reference)
        except ValueError:
            user_id = None
        if user_id is not None:
            found = await session.scalar(
                select(User.id).where(User.id == user_id, User.project_id == project.id)
            )
            if found is not None:
                return found
    external = _metadata(obj).get("userId")
    if not isinstance(external, str):
        return None
    return await session.scalar(
        select(User.id).where(User.project_id == project.id, User.external_id == external)
    )


async def receive(
    session: AsyncSession, gateway: StripeGateway, verified: VerifiedEvent
) -> dict[str, Any]:
    """Record the verified event once, and apply it (the route's one transaction)."""
    event = verified.event
    event_type = str(event.get("type") or "unknown")
    obj = (event.get("data") or {}).get("object") or {}
    sub_id = _subscription_id(event_type, obj)
    target = await _target(session, verified, obj, sub_id)
    first = await inbox.first_delivery(
        session,
        "stripe",
        str(event["id"]),
        event_type[:100],
        project_id=target.project.id if target else None,
        summary=_summary(event, obj),
    )
    if not first:
        return {"received": True, "idempotent": True}
    if platform_plan.is_platform_event(event, obj):  # the operator's own plan, not a project's
        await platform_plan.on_event(
            session, gateway, mode=verified.mode, obj=obj, subscription_id=sub_id
        )
        return {"received": True}
    home = target.project if target is not None else None  # operator-account home purchases
    if await stripe_purchases.handle(session, gateway, event, home):
        return {"received": True}
    await _dispatch(session, gateway, event_type, obj, target, sub_id)
    return {"received": True}


async def _dispatch(
    session: AsyncSession,
    gateway: StripeGateway,
    event_type: str,
    obj: dict[str, Any],
    target: Target | None,
    sub_id: str | None,
) -> None:
    if event_type == "checkout.session.completed" and obj.get("mode") == "payment":
        from tollhouse.billing import cart  # type: ignore[attr-defined,unused-ignore]

        await cart.on_payment_completed(session, obj)
        return
    if event_type == "checkout.session.expired":
        from tollhouse.billing import cart  # type: ignore[attr-defined,unused-ignore]

        await cart.on_session_expired(session, obj)
        return
    if target is None or sub_id is None:
        return  # recorded only (charge.refunded, unknown types, events of no project)
    subscription_checkout = event_type == "checkout.session.completed"
    if subscription_checkout or event_type in SUBSCRIPTION_EVENTS:
        user_id = await _user_for(session, target.project, obj)
    elif event_type in INVOICE_EVENTS:
        user_id = None  # only subscriptions we already know
        if await subs.subscription_row(session, sub_id) is None:
            return
    else:
        return
    await subs.sync(
        session,
        gateway,
        project=target.project,
        account_id=target.account_id,
        subscription_id=sub_id,
        user_id=user_id,
    )
