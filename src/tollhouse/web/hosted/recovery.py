"""Links sent by mail: `/verify` (confirm the address, then back to the app signed in) and
`/forgot` → `/reset` (a new password).

A link opens a page with a button rather than acting on GET: mail scanners fetch links, and
must not use up a single-use ticket.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tollhouse.db.session import SessionDep
from tollhouse.identity import accounts
from tollhouse.identity.caller import identity_context
from tollhouse.kit.errors import TollhouseError
from tollhouse.web.forms import parse_form
from tollhouse.web.hosted.common import hand_back, hosted_page, limit_auth_attempts, send_mail
from tollhouse.web.hosted.forms import EmailForm, ResetForm, TicketForm
from tollhouse.web.hosted.pages import form_values, refuse, show

router = APIRouter(include_in_schema=False)


def _token(request: Request) -> str:
    return request.query_params.get("token", "")[:128]


@router.get("/verify")
async def verify_page(request: Request, session: SessionDep) -> HTMLResponse:
    page = await hosted_page(request, session)
    return show(page, "verify", token=_token(request))


@router.post("/verify", response_model=None)
async def verify(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    page = await hosted_page(request, session)
    pepper = identity_context(request).pepper
    try:
        form = await parse_form(request, TicketForm)
        user = await accounts.verify_email(session, pepper, page.project.id, form.token)
    except TollhouseError as exc:
        return await refuse(page, "verify", exc, {}, token=_token(request))
    return await hand_back(page, user)


@router.get("/forgot")
async def forgot_page(request: Request, session: SessionDep) -> HTMLResponse:
    return show(await hosted_page(request, session), "forgot")


@router.post("/forgot")
async def forgot(request: Request, session: SessionDep) -> HTMLResponse:
    """The same answer whether or not the address has an account (no account probing)."""
    page = await hosted_page(request, session)
    pepper = identity_context(request).pepper
    try:
        form = await parse_form(request, EmailForm)
        await limit_auth_attempts(page, form.email)
        user = await accounts.account_user(session, page.project.id, form.email)
        if user is not None:
            token = await accounts.issue_ticket(session, pepper, user, "reset")
            await send_mail(
                page,
                accounts.normalise_email(form.email),
                "reset your password",
                "Someone asked to reset the password of your account. To choose a new one:\n"
                f"{page.absolute('/reset', token=token)}\n\n"
                "The link works once, for an hour. If it was not you, ignore this message.",
            )
    except TollhouseError as exc:
        return await refuse(page, "forgot", exc, await form_values(page))
    return show(page, "check_mail", email=accounts.normalise_email(form.email), reset=True)


@router.get("/reset")
async def reset_page(request: Request, session: SessionDep) -> HTMLResponse:
    page = await hosted_page(request, session)
    return show(page, "reset", token=_token(request))


@router.post("/reset", response_model=None)
async def reset(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    page = await hosted_page(request, session)
    pepper = identity_context(request).pepper
    try:
        form = await parse_form(request, ResetForm)
        user = await accounts.reset_password(
            session, pepper, page.project.id, form.token, form.password
        )
    except TollhouseError as exc:
        return await refuse(page, "reset", exc, {}, token=_token(request))
    return await hand_back(page, user)
