"""The operator's pages: platforms, paying and trialing, live users, MRR and overage
(`billing/operator.py`, platform-contract §1.6), and the credit ledger's audit
(`ledger/service.py::audit`).

Two ways in. An operator account (a console account marked by `tollhouse operators add`)
signs in at /console/signin like any developer and opens them with its console session. The
admin key (`ADMIN_API_KEY`) is traded for a signed cookie (8 hours) that names a fingerprint of
the key, so changing the key ends every such session.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from tollhouse.billing import operator
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import SESSION_COOKIE, identity_context
from tollhouse.identity.errors import InvalidAdminKey
from tollhouse.kit.crypto import keyed_hash, secrets_equal
from tollhouse.kit.errors import TollhouseError
from tollhouse.ledger import service as ledger
from tollhouse.metering.guards import limit_attempts
from tollhouse.web.console.common import (
    PAGE_SIZE,
    ConsolePage,
    Paging,
    SignInRequired,
    console_page,
    offset_of,
    paged,
    redirect,
    show,
)
from tollhouse.web.cookies import SignedCookie
from tollhouse.web.forms import InvalidForm, parse_form
from tollhouse.web.hosted.common import PageRefused
from tollhouse.web.hosted.forms import EmptyForm

router = APIRouter(include_in_schema=False)
SIGN_IN = "/console/operator/signin"
SESSION = SignedCookie("tollhouse_operator", "operator session", 8 * 3600)


class AdminKeyForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    admin_key: str = Field(min_length=1, max_length=256)


def _admin_key(request: Request) -> str | None:
    return identity_context(request).settings.secret("admin_api_key")


def _required_admin_key(request: Request) -> str:
    key = _admin_key(request)
    if key is None:
        raise PageRefused(
            404, "No admin key", "ADMIN_API_KEY is not set: sign in with an operator account."
        )
    return key


def _fingerprint(request: Request, key: str) -> str:
    return keyed_hash(identity_context(request).pepper, f"operator:{key}")[:32]


def _holds_admin_key(request: Request) -> bool:
    key = _admin_key(request)
    payload = SESSION.read(request)
    if key is None or payload is None:
        return False
    return secrets_equal(str(payload.get("k", "")), _fingerprint(request, key))


async def _operator_account(request: Request, session: SessionDep) -> ConsolePage | None:
    """The signed-in console account, when it is an operator's."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    try:
        page = await console_page(request, session)
    except SignInRequired:
        return None
    return page if page.is_operator else None


@router.get("/console/operator/signin")
async def signin_page(request: Request) -> HTMLResponse:
    return show(request, "operator_signin", admin_key_set=_admin_key(request) is not None)


@router.post("/console/operator/signin", response_model=None)
async def signin(request: Request) -> HTMLResponse | RedirectResponse:
    key = _required_admin_key(request)
    settings = identity_context(request).settings
    client = request.client.host if request.client is not None else "unknown"
    try:
        form = await parse_form(request, AdminKeyForm)
        await limit_attempts(
            request, f"operator-from:{client}", settings.console_login_attempts_per_minute
        )
        if not secrets_equal(form.admin_key, key):
            raise InvalidAdminKey()
    except TollhouseError as exc:
        fields = exc.fields if isinstance(exc, InvalidForm) else {}
        return show(
            request,
            "operator_signin",
            status=exc.status_code,
            error=exc.message,
            fields=fields,
            admin_key_set=True,
        )
    response = redirect("/console/operator")
    SESSION.write(request, response, {"k": _fingerprint(request, key)})
    return response


@router.post("/console/operator/signout")
async def signout(request: Request) -> RedirectResponse:
    await parse_form(request, EmptyForm)
    response = redirect(SIGN_IN)
    SESSION.clear(request, response)
    return response


@router.get("/console/operator", response_model=None)
async def overview(request: Request, session: SessionDep) -> Any:
    account = await _operator_account(request, session)
    if account is None and not _holds_admin_key(request):
        return redirect(SIGN_IN)
    settings = identity_context(request).settings
    offset = offset_of(request)
    found = await operator.overview(session, settings, limit=PAGE_SIZE, offset=offset)
    audit = await ledger.audit(session)
    mismatches, mismatches_page = paged(request, audit.mismatches, "mismatches")
    totals = found["totals"]
    return show(
        request,
        "operator",
        totals=totals,
        platforms=found["platforms"],
        paging=Paging(request, offset, PAGE_SIZE, totals["total_platforms"]),
        audit=audit,
        mismatches=mismatches,
        mismatches_page=mismatches_page,
        operator=True,
        me=account,
    )
