"""Home-project purchases on the operator's own Stripe account (no Connect).

Checkout: the price is the catalogue's `stripe_price_id`, never the client's; metadata names
`{projectId, userId, productId}` and `client_reference_id` is our user id.

Webhooks (events of the home project with no `event.account`; `handle` answers False for
anything else, so the dispatcher goes on):

- `checkout.session.completed`, mode payment: the session is re-read with its line items and
  the pack of its price is granted as `stripe_purchase`, keyed `stripe:{session}` (the inbox
  dedupes one event; the key covers two events about one session).
- `checkout.session.completed`, mode subscription: the subscription is re-read and stored by
  `billing.stripe.subscriptions.sync` (plan = the catalogue product of its price), and the
  first month is granted, keyed `stripe:{subscription}:first`.
- `invoice.paid` with `billing_reason: subscription_cycle` (a renewal): that period's month,
  keyed `stripe:{subscription}:{invoice}`; other invoice and `customer.subscription.*` events
  only refresh the row (the first invoice is covered by the checkout grant).
- Yearly plans: `grant_due_months` (a periodic job) grants months 2-12 of each period, keyed
  `stripe:{subscription}:{YYYY-MM}`: grants are monthly whatever the billing interval.
- `charge.refunded` (fully refunded) of a pack's payment intent: the pack's credits are
  taken back with `refunds.take_back` (never negative; the shortfall flags the account), once
  per payment intent (inbox row `("stripe_refund", pi)` first). Partial refunds are recorded
  without effect; refunds of subscription invoices are not taken back.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing import inbox
from tollhouse.billing.apple.errors import UnknownProduct
from tollhouse.billing.apple.renewals import add_months, months_due
from tollhouse.billing.gateway import refunds
from tollhouse.billing.gateway.products import Catalogue, Product
from tollhouse.billing.models import Subscription
from tollhouse.billing.stripe import checkout
from tollhouse.billing.stripe import subscriptions as subs
from tollhouse.billing.stripe.client import CheckoutSession, StripeGateway
from tollhouse.billing.stripe.errors import NoBillingAccount, StripeNotConfigured
from tollhouse.identity.models import User
from tollhouse.kit.errors import BadRequest
from tollhouse.ledger import service as ledger
from tollhouse.ledger.models import CreditAccount, CreditTransaction
from tollhouse.tenancy.models import Project
from tollhouse.tenancy.service import HOME_PLATFORM_ID

log = structlog.get_logger("tollhouse.billing")

REFUND_SOURCE = "stripe_refund"
# Months still owed are caught up for this long after a period ends (a job that was down).
CATCH_UP = timedelta(days=35)
BATCH = 500


class ProductNotPurchasable(BadRequest):
    code = "product_not_purchasable"
    message = "This product has no Stripe price: it cannot be bought with Stripe."


class StripeCheckoutRequest(BaseModel):
    product_id: str = Field(min_length=1, max_length=100)
    success_url: str | None = Field(None, max_length=checkout.URL_MAX)
    cancel_url: str | None = Field(None, max_length=checkout.URL_MAX)


class StripeCheckoutResponse(BaseModel):
    url: str
    session_id: str


class PortalResponse(BaseModel):
    url: str


def _mode(project: Project) -> Literal["test", "live"]:
    return "live" if project.mode == "live" else "test"


def ledger_key(stripe_object_id: str) -> str:
    return f"stripe:{stripe_object_id}"


def _by_price(catalogue: Catalogue, price_id: str | None) -> Product | None:
    return next((p for p in catalogue.products if p.stripe_price_id == price_id), None)


# --- checkout and portal ------------------------------------------------------------------


async def create_checkout(
    session: AsyncSession,
    gateway: StripeGateway,
    user: User,
    catalogue: Catalogue,
    body: StripeCheckoutRequest,
    origin: str | None,
) -> CheckoutSession:
    project = await session.get_one(Project, user.project_id)
    if not gateway.configured(_mode(project)):  # no keys: say so before judging the product
        raise StripeNotConfigured()
    product = catalogue.get(body.product_id)
    if product is None:
        raise UnknownProduct(detail={"product_id": body.product_id})
    if product.stripe_price_id is None:
        raise ProductNotPurchasable(detail={"product_id": product.id})
    success = checkout.redirect_url(
        body.success_url, origin, "/billing?success=true", "success_url"
    )
    cancel = checkout.redirect_url(body.cancel_url, origin, "/billing?canceled=true", "cancel_url")
    return await gateway.create_checkout_session(
        mode=_mode(project),
        account_id=None,
        checkout_mode="payment" if product.kind == "credit_pack" else "subscription",
        line_items=[{"price": product.stripe_price_id, "quantity": 1}],
        success_url=success,
        cancel_url=cancel,
        metadata={"projectId": project.id, "userId": str(user.id), "productId": product.id},
        client_reference_id=str(user.id),
        customer_email=user.email,
        customer_id=await subs.latest_customer_id(session, project.id, user.id),
    )


async def portal(
    session: AsyncSession,
    gateway: StripeGateway,
    user: User,
    return_url: str | None,
    origin: str | None,
) -> str:
    """A billing-portal session for the customer of the user's latest home subscription."""
    customer = await subs.latest_customer_id(session, user.project_id, user.id)
    if customer is None:
        raise NoBillingAccount()
    project = await session.get(Project, user.project_id)
    assert project is not None
    back = checkout.redirect_url(return_url, origin, "/billing", "return_url")
    return await gateway.create_portal_session(
        mode=_mode(project), account_id=None, customer_id=customer, return_url=back
    )


# --- webhooks -----------------------------------------------------------------------------


def _catalogue(gateway: StripeGateway) -> Catalogue:
    return Catalogue.from_settings(gateway.settings)


async def handle(
    session: AsyncSession,
    gateway: StripeGateway,
    event: dict[str, Any],
    project: Project | None,
) -> bool:
    """Apply an event of the home project on the operator's account; False if not ours."""
    if event.get("account") is not None:
        return False
    event_type = str(event.get("type"))
    obj: dict[str, Any] = (event.get("data") or {}).get("object") or {}
    catalogue = _catalogue(gateway)
    if event_type == "charge.refunded":
        return await _refund(session, obj)
    if project is None or project.platform_id != HOME_PLATFORM_ID:
        return False
    if event_type == "checkout.session.completed":
        if obj.get("mode") == "payment":
            await _pack_paid(session, gateway, catalogue, project, obj)
        elif obj.get("mode") == "subscription":
            await _subscribed(session, gateway, catalogue, project, obj)
        return True
    sub_id = subs.stripe_id(obj.get("id")) if obj.get("object") == "subscription" else None
    if obj.get("object") == "invoice":
        sub_id = _invoice_subscription(obj)
    if sub_id is None or await subs.subscription_row(session, sub_id) is None:
        return True  # recorded only: nothing of ours to refresh
    row = await _sync(session, gateway, catalogue, project, sub_id, None)
    if event_type == "invoice.paid" and obj.get("billing_reason") == "subscription_cycle":
        await _grant_month(session, catalogue, row, key=f"{sub_id}:{obj.get('id')}")
    return True


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    found = subs.stripe_id(invoice.get("subscription"))
    if found is None:
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        found = subs.stripe_id(details.get("subscription"))
    return found


async def _buyer(session: AsyncSession, project: Project, obj: dict[str, Any]) -> User | None:
    reference = obj.get("client_reference_id")
    try:
        user_id = uuid.UUID(str(reference))
    except ValueError:
        return None
    user = await session.get(User, user_id)
    return user if user is not None and user.project_id == project.id else None


async def _pack_paid(
    session: AsyncSession,
    gateway: StripeGateway,
    catalogue: Catalogue,
    project: Project,
    obj: dict[str, Any],
) -> None:
    paid = await gateway.retrieve_checkout_session(
        mode=project.mode, account_id=None, session_id=str(obj["id"]), expand_line_items=True
    )
    user = await _buyer(session, project, paid)
    if paid.get("payment_status") != "paid" or user is None:
        log.warning("stripe_purchase_unattributed", session_id=paid.get("id"))
        return
    credits, names = 0, []
    for item in (paid.get("line_items") or {}).get("data") or []:
        product = _by_price(catalogue, subs.stripe_id(item.get("price")))
        if product is None or product.kind != "credit_pack":
            log.warning("stripe_purchase_unknown_price", session_id=paid.get("id"))
            return
        quantity = int(item.get("quantity") or 1)
        credits += product.credits * quantity
        names.append(f"{quantity} × {product.name}" if quantity > 1 else product.name)
    if credits <= 0:
        return
    account = await ledger.ensure_account(session, user)
    await ledger.grant(
        session,
        account.id,
        credits,
        "stripe_purchase",
        description=f"Stripe: {', '.join(names)}",
        reference_id=subs.stripe_id(paid.get("payment_intent")) or str(paid["id"]),
        idempotency_key=ledger_key(str(paid["id"])),
    )


async def _sync(
    session: AsyncSession,
    gateway: StripeGateway,
    catalogue: Catalogue,
    project: Project,
    subscription_id: str,
    user_id: uuid.UUID | None,
) -> Subscription | None:
    def plan_of(price: dict[str, Any]) -> str | None:
        product = _by_price(catalogue, subs.stripe_id(price))
        return product.id if product is not None and product.kind == "subscription" else None

    return await subs.sync(
        session,
        gateway,
        project=project,
        account_id=None,
        subscription_id=subscription_id,
        user_id=user_id,
        plan_of=plan_of,
    )


async def _subscribed(
    session: AsyncSession,
    gateway: StripeGateway,
    catalogue: Catalogue,
    project: Project,
    obj: dict[str, Any],
) -> None:
    sub_id = subs.stripe_id(obj.get("subscription"))
    user = await _buyer(session, project, obj)
    if sub_id is None or user is None:
        log.warning("stripe_subscription_unattributed", session_id=obj.get("id"))
        return
    row = await _sync(session, gateway, catalogue, project, sub_id, user.id)
    await _grant_month(session, catalogue, row, key=f"{sub_id}:first")


async def _grant_month(
    session: AsyncSession,
    catalogue: Catalogue,
    row: Subscription | None,
    *,
    key: str,
    label: str = "",
) -> bool:
    """One month of the row's plan, once per key; nothing unless the plan is live."""
    if row is None or row.status not in subs.ENTITLED_STATUSES:
        return False
    product = catalogue.get(row.plan)
    user = await session.get(User, row.user_id)
    if product is None or user is None:
        return False
    account = await ledger.ensure_account(session, user)
    await ledger.grant(
        session,
        account.id,
        product.credits,
        "subscription_grant",
        description=f"Stripe: {product.name}{label}",
        reference_id=row.stripe_subscription_id,
        idempotency_key=ledger_key(key),
    )
    return True


async def grant_due_months(session: AsyncSession, catalogue: Catalogue, now: datetime) -> int:
    """Months 2-12 of each live yearly period, once per (subscription, YYYY-MM)."""
    yearly = catalogue.yearly_plan_ids()
    if not yearly:
        return 0
    rows = await session.scalars(
        select(Subscription)
        .join(Project, Project.id == Subscription.project_id)
        .where(
            Project.platform_id == HOME_PLATFORM_ID,
            Subscription.plan.in_(yearly),
            Subscription.status.in_(subs.ENTITLED_STATUSES),
            Subscription.current_period_end > now - CATCH_UP,
        )
        .order_by(Subscription.created_at)
        .limit(BATCH)
    )
    granted = 0
    for row in rows.all():
        assert row.current_period_end is not None
        end = row.current_period_end.replace(tzinfo=now.tzinfo)
        start = add_months(end, -12)
        for month in range(1, months_due(start, end, now)):
            begins = add_months(start, month)
            key = f"{row.stripe_subscription_id}:{begins:%Y-%m}"
            label = f", month {month + 1} ({begins:%Y-%m})"
            granted += await _grant_month(session, catalogue, row, key=key, label=label)
    return granted


async def _refund(session: AsyncSession, charge: dict[str, Any]) -> bool:
    """A fully refunded charge of a pack: take its credits back, once per payment intent."""
    intent = subs.stripe_id(charge.get("payment_intent"))
    if intent is None:
        return False
    account_id = await session.scalar(
        select(CreditTransaction.account_id)
        .join(CreditAccount, CreditAccount.id == CreditTransaction.account_id)
        .join(Project, Project.id == CreditAccount.project_id)
        .where(
            Project.platform_id == HOME_PLATFORM_ID,
            CreditTransaction.reference_id == intent,
            CreditTransaction.type == "stripe_purchase",
        )
        .limit(1)
    )
    if account_id is None:
        return False  # not a home purchase: someone else's charge
    if not charge.get("refunded"):
        log.info("stripe_partial_refund_ignored", payment_intent=intent)
        return True
    if not await inbox.first_delivery(session, REFUND_SOURCE, intent, "charge.refunded"):
        return True
    granted = await refunds.granted_for(session, account_id, intent, ("stripe_purchase",))
    await refunds.take_back(
        session,
        account_id,
        granted,
        idempotency_key=f"{ledger_key(intent)}:refund",
        reference_id=intent,
        description="Stripe refund",
        reason="stripe_refund",
    )
    return True
