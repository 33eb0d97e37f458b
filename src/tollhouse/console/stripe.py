"""Stripe Connect for the developer's platform: connect per mode, callback, status, disconnect.

The OAuth `state` is random, stored hashed, single use and short-lived (`billing.stripe.connect`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from tollhouse.billing.stripe import catalog_sync, connect
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.billing.stripe.errors import OAuthDenied
from tollhouse.console.deps import ConsoleDep

router = APIRouter(prefix="/stripe", tags=["console"])

ModeQuery = Annotated[Literal["test", "live"], Query()]
CALLBACK_ROUTE = "stripe_connect_callback"


@router.get("/connect")
async def connect_start(
    request: Request, mode: ModeQuery, console: ConsoleDep, stripe: StripeDep
) -> RedirectResponse:
    redirect_uri = console.settings.stripe_connect_redirect_uri or str(
        request.url_for(CALLBACK_ROUTE)
    )
    url = await connect.start(
        console.session,
        stripe,
        console.pepper,
        platform_id=console.platform_id,
        mode=mode,
        redirect_uri=redirect_uri,
    )
    await console.audit("stripe.connect.start", mode)
    return RedirectResponse(url, status_code=302)


@router.get("/callback", name=CALLBACK_ROUTE)
async def connect_callback(
    console: ConsoleDep,
    stripe: StripeDep,
    state: Annotated[str, Query(min_length=16, max_length=200)],
    code: Annotated[str | None, Query(max_length=500)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> RedirectResponse:
    if error is not None or code is None:
        raise OAuthDenied(detail={"stripeError": error})
    done = await connect.finish(
        console.session,
        stripe,
        console.pepper,
        platform_id=console.platform_id,
        code=code,
        state=state,
    )
    priced = await catalog_sync.price_unpriced(
        console.session, stripe, console.platform_id, done.mode, done.account_id
    )
    await console.audit("stripe.connect", done.mode, account_id=done.account_id, priced=priced)
    return RedirectResponse(console.settings.stripe_connect_done_url, status_code=302)


@router.get("")
async def connect_status(console: ConsoleDep, stripe: StripeDep) -> dict[str, Any]:
    return {"modes": await connect.status(console.session, stripe, console.platform_id)}


@router.delete("", status_code=204)
async def connect_remove(mode: ModeQuery, console: ConsoleDep) -> None:
    if await connect.disconnect(console.session, console.platform_id, mode):
        await console.audit("stripe.disconnect", mode)
