"""`/signin` and `/signout`: back to the app with a token, or out of the hosted pages.

`next=account` sends a signed-in person to their account page instead of back to the app.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tollhouse.db.session import SessionDep
from tollhouse.identity import accounts
from tollhouse.kit.errors import TollhouseError
from tollhouse.web.forms import parse_form
from tollhouse.web.hosted.common import (
    hand_back,
    hosted_page,
    limit_auth_attempts,
    remember_sign_in,
    sign_out,
    signed_in_user,
)
from tollhouse.web.hosted.forms import EmptyForm, SignInForm
from tollhouse.web.hosted.pages import form_values, refuse, show

router = APIRouter(include_in_schema=False)


def _wants_account(request: Request) -> bool:
    return request.query_params.get("next") == "account"


@router.get("/signin", response_model=None)
async def signin_page(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    wants_account = _wants_account(request)
    page = await hosted_page(request, session, redirect_required=not wants_account)
    user = await signed_in_user(page)
    if user is not None:
        # Already signed in here: straight on, as an identity provider's widget would.
        if wants_account:
            return RedirectResponse(page.link("/account"), status_code=303)
        return await hand_back(page, user)
    return show(page, "signin", next_page="account" if wants_account else None)


@router.post("/signin", response_model=None)
async def signin(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    wants_account = _wants_account(request)
    page = await hosted_page(request, session, redirect_required=not wants_account)
    next_page = "account" if wants_account else None
    try:
        form = await parse_form(request, SignInForm)
        await limit_auth_attempts(page, form.email)
        user = await accounts.sign_in(session, page.project.id, form.email, form.password)
    except TollhouseError as exc:
        return await refuse(page, "signin", exc, await form_values(page), next_page=next_page)
    if wants_account:
        response = RedirectResponse(page.link("/account"), status_code=303)
        remember_sign_in(page, user, response)
        return response
    return await hand_back(page, user)


@router.post("/signout", response_model=None)
async def signout(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    page = await hosted_page(request, session, redirect_required=False)
    try:
        await parse_form(request, EmptyForm)
    except TollhouseError as exc:
        return await refuse(page, "signin", exc, {})
    response = RedirectResponse(page.link("/signin"), status_code=303)
    sign_out(page, response)
    return response
