"""Gateway API billing (flash-contract §1.8): /api/v1/billing/* and, for a gateway that
forwards to a separate billing process, the same routes at /internal/billing/* (behind
`X-Service-Key: BILLING_API_KEY`, the user named by `X-User-Id`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from tollhouse.billing.apple import purchases
from tollhouse.billing.gateway import stripe_purchases
from tollhouse.billing.gateway.products import Product
from tollhouse.billing.gateway.schemas import (
    AppleVerifyRequest,
    AppleVerifyResponse,
    ProductOut,
    ProductsResponse,
    StatusResponse,
)
from tollhouse.billing.gateway.service import GatewayBilling, gateway_billing, status
from tollhouse.billing.gateway.stripe_purchases import (
    PortalResponse,
    StripeCheckoutRequest,
    StripeCheckoutResponse,
)
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import Caller, billing_caller, identity_context, user_caller
from tollhouse.identity.models import User
from tollhouse.kit.errors import Forbidden

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])
internal = APIRouter(
    prefix="/internal/billing", tags=["internal"], dependencies=[Depends(billing_caller)]
)
BillingDep = Annotated[GatewayBilling, Depends(gateway_billing)]


class HomeProjectOnly(Forbidden):
    code = "home_project_only"
    message = "Gateway billing is for users of the home project."


async def home_user(request: Request, caller: Annotated[Caller, Depends(user_caller)]) -> User:
    """The calling user, who must belong to the home project (not a platform's end user)."""
    assert caller.user is not None
    if caller.user.project_id != identity_context(request).home_project_id:
        raise HomeProjectOnly()
    return caller.user


HomeUser = Annotated[User, Depends(home_user)]


def _product_out(product: Product) -> ProductOut:
    return ProductOut(
        id=product.id,
        type=product.kind,
        name=product.name,
        credits=product.credits,
        credits_per_month=product.credits if product.kind == "subscription" else None,
        interval=product.interval,
        price_cents=product.price_cents,
        currency=product.currency,
        apple_product_id=product.apple_product_id,
        stripe_price_id=product.stripe_price_id,
    )


async def products(billing: BillingDep) -> ProductsResponse:
    """The catalogue (public): credit packs and subscriptions, with the credits each grants."""
    return ProductsResponse(products=[_product_out(p) for p in billing.catalogue.products])


async def billing_status(
    user: HomeUser, session: SessionDep, billing: BillingDep
) -> StatusResponse:
    return await status(session, user, billing.catalogue)


async def apple_verify(
    body: AppleVerifyRequest, user: HomeUser, session: SessionDep, billing: BillingDep
) -> AppleVerifyResponse:
    """Verify a StoreKit 2 signed transaction and grant its credits, once per transaction."""
    payload = await billing.apple_verifier().transaction(body.signed_transaction)
    purchase = purchases.purchase_from(payload, billing.catalogue)
    claim = await purchases.claim(session, user, purchase, billing.credits)
    return AppleVerifyResponse(
        granted=claim.granted,
        balance=claim.balance,
        transaction_id=purchase.transaction_id,
        product_id=purchase.product.id,
        already_verified=claim.already_claimed,
    )


async def stripe_checkout(
    request: Request,
    body: StripeCheckoutRequest,
    user: HomeUser,
    session: SessionDep,
    billing: BillingDep,
    stripe: StripeDep,
) -> StripeCheckoutResponse:
    """A Checkout Session on the operator's account for a pack or a plan of the catalogue."""
    created = await stripe_purchases.create_checkout(
        session, stripe, user, billing.catalogue, body, request.headers.get("origin")
    )
    return StripeCheckoutResponse(url=created.url, session_id=created.id)


async def stripe_portal(
    request: Request,
    user: HomeUser,
    session: SessionDep,
    stripe: StripeDep,
    return_url: str | None = None,
) -> PortalResponse:
    """The Stripe billing portal for the user's customer (from their latest subscription)."""
    url = await stripe_purchases.portal(
        session, stripe, user, return_url, request.headers.get("origin")
    )
    return PortalResponse(url=url)


for _router in (router, internal):
    _router.add_api_route("/products", products, methods=["GET"], response_model=ProductsResponse)
    _router.add_api_route("/status", billing_status, methods=["GET"], response_model=StatusResponse)
    _router.add_api_route(
        "/apple/verify", apple_verify, methods=["POST"], response_model=AppleVerifyResponse
    )
    _router.add_api_route(
        "/stripe/checkout",
        stripe_checkout,
        methods=["POST"],
        response_model=StripeCheckoutResponse,
    )
    _router.add_api_route(
        "/stripe/portal", stripe_portal, methods=["GET"], response_model=PortalResponse
    )
