"""`/account` (the SDK's `getCustomerPortalUrl`): details, plan, billing portal, sign out;
and `/refresh` (`getRefreshUrl`): back to the app with a token carrying the plan as it is
now — the success URL to give Stripe Checkout, so an upgrade shows at once.

Not signed in: `/account` goes through sign-in first; `/refresh` is sign-in (which hands
back a fresh token anyway).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tollhouse.billing.stripe import checkout
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.catalog import service as catalog
from tollhouse.db.session import SessionDep
from tollhouse.identity import accounts
from tollhouse.identity.models import User
from tollhouse.kit.errors import TollhouseError
from tollhouse.metering.plans import effective_plan_of
from tollhouse.web.forms import parse_form
from tollhouse.web.hosted.common import HostedPage, hand_back, hosted_page, signed_in_user
from tollhouse.web.hosted.forms import DetailsForm
from tollhouse.web.hosted.pages import roll_back, show

router = APIRouter(include_in_schema=False)


def _to_sign_in(page: HostedPage) -> RedirectResponse:
    return RedirectResponse(page.link("/signin", next="account"), status_code=303)


async def _account(
    page: HostedPage, user: User, *, status: int = 200, **context: object
) -> HTMLResponse:
    plan = await effective_plan_of(page.session, user)
    tier = await catalog.tier_by_slug(page.session, page.project.id, plan)
    return show(
        page,
        "account",
        status=status,
        user=user,
        plan=plan,
        plan_name=tier.display_name if tier is not None else plan,
        **context,
    )


@router.get("/account", response_model=None)
async def account_page(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    page = await hosted_page(request, session, redirect_required=False)
    user = await signed_in_user(page)
    if user is None:
        return _to_sign_in(page)
    notice = "Your details are saved." if request.query_params.get("saved") else None
    return await _account(page, user, notice=notice)


@router.post("/account", response_model=None)
async def update_account(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    page = await hosted_page(request, session, redirect_required=False)
    user = await signed_in_user(page)
    if user is None:
        return _to_sign_in(page)
    try:
        form = await parse_form(request, DetailsForm)
        await accounts.update_details(session, user, form.first_name, form.last_name)
    except TollhouseError as exc:
        await roll_back(page, user)
        return await _account(page, user, error=exc.message, status=exc.status_code)
    return RedirectResponse(page.link("/account", saved="1"), status_code=303)


@router.get("/account/billing", response_model=None)
async def billing_portal(
    request: Request, session: SessionDep, stripe: StripeDep
) -> HTMLResponse | RedirectResponse:
    """Stripe's customer portal for the signed-in user, returning to this page.

    A GET (a link, not a form): it changes nothing here, and the portal's address is not
    known in advance to name in the page's form-action."""
    page = await hosted_page(request, session, redirect_required=False)
    user = await signed_in_user(page)
    if user is None:
        return _to_sign_in(page)
    buyer = checkout.Buyer(project=page.project, user=user, publishable_key=page.pk)
    body = checkout.PortalRequest(returnUrl=page.absolute("/account"))
    try:
        url = await checkout.portal(session, stripe, buyer, body, None)
    except TollhouseError as exc:
        await roll_back(page, user)
        return await _account(page, user, error=exc.message, status=exc.status_code)
    return RedirectResponse(url, status_code=303)


@router.get("/refresh", response_model=None)
async def refresh(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    page = await hosted_page(request, session)
    user = await signed_in_user(page)
    if user is None:
        return RedirectResponse(page.link("/signin"), status_code=303)
    return await hand_back(page, user)
