"""The developer's account: sign up, sign in, sign out, password reset by mail, personal
access tokens, and the audit log of what the account did."""

from __future__ import annotations

import uuid
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.console import account as api
from tollhouse.console.schemas import LoginRequest, SignupRequest, TokenCreate
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import SESSION_COOKIE, identity_context
from tollhouse.kit.errors import TollhouseError
from tollhouse.kit.mail import Mail, Mailer
from tollhouse.tenancy import developers
from tollhouse.web.console.common import (
    HOME,
    PAGE_SIZE,
    SIGN_IN,
    ConsolePage,
    ConsolePageDep,
    Paging,
    close_session,
    offset_of,
    open_session,
    paged,
    redirect,
    refusal,
    show,
)
from tollhouse.web.forms import InvalidForm, parse_body, parse_form
from tollhouse.web.hosted.common import PageRefused
from tollhouse.web.hosted.forms import EmailForm, EmptyForm, ResetForm

router = APIRouter(include_in_schema=False)


def _next_page(request: Request) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    wanted = request.query_params.get("next", "")
    return wanted if wanted.startswith("/console") and "//" not in wanted else HOME


def _signed_in(request: Request, plaintext: str, to: str = HOME) -> RedirectResponse:
    response = redirect(to)
    open_session(request, response, plaintext)
    return response


async def _refused(
    request: Request, session: AsyncSession, template: str, exc: TollhouseError, **context: Any
) -> HTMLResponse:
    """A signed-out form again with what stopped it (its writes rolled back); the address
    typed is kept, never a password."""
    await session.rollback()
    form = await request.form()
    email = form.get("email")
    return show(
        request,
        template,
        status=exc.status_code,
        error=exc.message,
        fields=exc.fields if isinstance(exc, InvalidForm) else {},
        values={"email": email[:320]} if isinstance(email, str) else {},
        **context,
    )


@router.get("/console/signup")
async def signup_page(request: Request) -> HTMLResponse:
    return show(request, "signup")


@router.post("/console/signup", response_model=None)
async def signup(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    try:
        body = await parse_body(request, SignupRequest)
        await api.limit_signups(request)
        developer = await developers.sign_up(session, body.email, body.password)
        issued = await api.begin_session(
            session, identity_context(request).pepper, developer, "developer.signup"
        )
    except TollhouseError as exc:
        return await _refused(request, session, "signup", exc)
    return _signed_in(request, issued.plaintext)


@router.get("/console/signin")
async def signin_page(request: Request) -> HTMLResponse:
    return show(request, "signin", next_page=_next_page(request))


@router.post("/console/signin", response_model=None)
async def signin(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    try:
        body = await parse_body(request, LoginRequest)
        await api.limit_logins(request, body.email)
        developer = await developers.log_in(session, body.email, body.password)
        issued = await api.begin_session(
            session, identity_context(request).pepper, developer, "developer.login"
        )
    except TollhouseError as exc:
        return await _refused(request, session, "signin", exc, next_page=_next_page(request))
    return _signed_in(request, issued.plaintext, _next_page(request))


@router.post("/console/signout")
async def signout(page: ConsolePageDep) -> RedirectResponse:
    request = page.request
    await parse_form(request, EmptyForm)
    await developers.end_session(
        page.console.session, page.console.pepper, request.cookies.get(SESSION_COOKIE, "")
    )
    await page.console.audit("developer.logout")
    response = redirect(SIGN_IN)
    close_session(request, response)
    return response


# --- password reset ------------------------------------------------------------------------


@router.get("/console/forgot")
async def forgot_page(request: Request) -> HTMLResponse:
    return show(request, "forgot")


@router.post("/console/forgot")
async def forgot(request: Request, session: SessionDep) -> HTMLResponse:
    context = identity_context(request)
    try:
        form = await parse_form(request, EmailForm)
        # Each request may send a mail: limited like sign-in attempts, per address and client.
        await api.limit_logins(request, form.email)
        token = await developers.reset_link_token(session, context.pepper, form.email)
        if token is not None:
            link = f"{str(request.base_url).rstrip('/')}/console/reset?token={token}"
            mailer = cast(Mailer, request.app.state.mailer)
            await mailer.send(
                session,
                Mail(
                    developers.normalise_email(form.email),
                    "Tollhouse: reset your console password",
                    f"Choose a new password for the Tollhouse console (valid for an hour):\n"
                    f"{link}\n\nIf you did not ask for this, ignore this message.",
                ),
            )
    except TollhouseError as exc:
        return await _refused(request, session, "forgot", exc)
    # The same answer whether or not the account exists.
    return show(
        request,
        "forgot",
        sent=True,
        dev_mail=not context.settings.is_production,
        values={"email": form.email},
    )


@router.get("/console/reset")
async def reset_page(request: Request) -> HTMLResponse:
    token = request.query_params.get("token", "")[: developers.CREDENTIAL_MAX]
    if not token:
        raise PageRefused(400, "Missing link", "This page needs the link from the reset mail.")
    return show(request, "reset", token=token)


@router.post("/console/reset", response_model=None)
async def reset(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    pepper = identity_context(request).pepper
    try:
        form = await parse_form(request, ResetForm)
        developer = await developers.reset_password(session, pepper, form.token, form.password)
        issued = await api.begin_session(session, pepper, developer, "developer.password_reset")
    except TollhouseError as exc:
        token = (await request.form()).get("token")
        return await _refused(
            request, session, "reset", exc, token=token if isinstance(token, str) else ""
        )
    return _signed_in(request, issued.plaintext)


# --- personal access tokens ----------------------------------------------------------------


async def _tokens_page(page: ConsolePage, *, status: int = 200, **context: object) -> HTMLResponse:
    tokens = await api.list_tokens(page.console)
    rows, paging = paged(page.request, tokens)
    return show(
        page.request, "tokens", status=status, me=page, tokens=rows, paging=paging, **context
    )


@router.get("/console/tokens")
async def tokens_page(page: ConsolePageDep) -> HTMLResponse:
    return await _tokens_page(page)


@router.post("/console/tokens")
async def create_token(page: ConsolePageDep) -> HTMLResponse:
    try:
        body = await parse_body(page.request, TokenCreate)
        created = await api.create_token(body, page.console)
    except TollhouseError as exc:
        return await _tokens_page(page, **await refusal(page, exc))
    return await _tokens_page(page, status=201, created=created)


@router.post("/console/tokens/{token_id}/revoke")
async def revoke_token(token_id: str, page: ConsolePageDep) -> RedirectResponse:
    await parse_form(page.request, EmptyForm)
    try:
        await api.revoke_token(uuid.UUID(token_id[:40]), page.console)
    except (ValueError, TollhouseError) as exc:
        raise PageRefused(404, "Not found", "No such personal access token.") from exc
    return redirect("/console/tokens")


# --- audit ---------------------------------------------------------------------------------


@router.get("/console/audit")
async def audit_page(page: ConsolePageDep) -> HTMLResponse:
    entries = await api.audit_log(page.console, limit=PAGE_SIZE, offset=offset_of(page.request))
    paging = Paging(page.request, entries.offset, entries.limit, entries.total)
    return show(page.request, "audit", me=page, entries=entries.entries, paging=paging)
