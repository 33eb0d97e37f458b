"""`/signup`: a new account for the project's end user; a verification link by mail."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tollhouse.db.session import SessionDep
from tollhouse.identity import accounts
from tollhouse.identity.caller import identity_context
from tollhouse.kit.errors import TollhouseError
from tollhouse.web.forms import parse_form
from tollhouse.web.hosted.common import hosted_page, limit_auth_attempts, send_mail
from tollhouse.web.hosted.forms import SignUpForm
from tollhouse.web.hosted.pages import form_values, refuse, show

router = APIRouter(include_in_schema=False)


@router.get("/signup")
async def signup_page(request: Request, session: SessionDep) -> HTMLResponse:
    return show(await hosted_page(request, session), "signup")


@router.post("/signup")
async def signup(request: Request, session: SessionDep) -> HTMLResponse:
    page = await hosted_page(request, session)
    context = identity_context(request)
    try:
        form = await parse_form(request, SignUpForm)
        await limit_auth_attempts(page, form.email)
        user = await accounts.sign_up(
            session,
            page.project.id,
            form.email,
            form.password,
            hooks=context.user_created_hooks,
        )
        await accounts.update_details(session, user, form.first_name, form.last_name)
        token = await accounts.issue_ticket(session, context.pepper, user, "verify")
        await send_mail(
            page,
            form.email,
            "confirm your email",
            f"Welcome to {page.project.name}.\n\nConfirm your email to finish signing up:\n"
            f"{page.absolute('/verify', token=token)}\n\n"
            "If you did not sign up, ignore this message.",
        )
    except TollhouseError as exc:
        return await refuse(page, "signup", exc, await form_values(page))
    return show(page, "check_mail", email=accounts.normalise_email(form.email))
