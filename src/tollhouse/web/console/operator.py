"""The operator's pages, behind the admin key (`ADMIN_API_KEY`; off without it): platforms,
paying and trialing, live users, MRR and overage (`billing/operator.py`, platform-contract
§1.6), and the credit ledger's audit (`ledger/service.py::audit`).

Signing in trades the admin key for a signed cookie (8 hours) that names a fingerprint of the
key, so changing the key ends every operator session.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from tollhouse.billing import operator
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import identity_context
from tollhouse.identity.errors import InvalidAdminKey
from tollhouse.kit.crypto import keyed_hash, secrets_equal
from tollhouse.kit.errors import TollhouseError
from tollhouse.ledger import service as ledger
from tollhouse.metering.guards import limit_attempts
from tollhouse.web.console.common import PAGE_SIZE, Paging, offset_of, redirect, show
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


def _admin_key(request: Request) -> str:
    key = identity_context(request).settings.secret("admin_api_key")
    if key is None:
        raise PageRefused(404, "Operator pages are off", "Set ADMIN_API_KEY to use them.")
    return key


def _fingerprint(request: Request, key: str) -> str:
    return keyed_hash(identity_context(request).pepper, f"operator:{key}")[:32]


def _signed_in(request: Request) -> bool:
    payload = SESSION.read(request)
    expected = _fingerprint(request, _admin_key(request))
    return payload is not None and secrets_equal(str(payload.get("k", "")), expected)


@router.get("/console/operator/signin")
async def signin_page(request: Request) -> HTMLResponse:
    _admin_key(request)
    return show(request, "operator_signin")


@router.post("/console/operator/signin", response_model=None)
async def signin(request: Request) -> HTMLResponse | RedirectResponse:
    key = _admin_key(request)
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
            request, "operator_signin", status=exc.status_code, error=exc.message, fields=fields
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
    if not _signed_in(request):
        return redirect(SIGN_IN)
    settings = identity_context(request).settings
    offset = offset_of(request)
    found = await operator.overview(session, settings, limit=PAGE_SIZE, offset=offset)
    audit = await ledger.audit(session)
    totals = found["totals"]
    return show(
        request,
        "operator",
        totals=totals,
        platforms=found["platforms"],
        paging=Paging(request, offset, PAGE_SIZE, totals["total_platforms"]),
        audit=audit,
        operator=True,
    )
