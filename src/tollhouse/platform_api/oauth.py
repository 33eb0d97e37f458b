"""`POST /oauth/complete`: the original bound any user id to any project and handed back a
sign-in token, with no authentication at all (platform-contract §1.5).

Here the caller proves who they are: the publishable key plus a token of the project's own
identity provider (or one of ours) in `X-Clerk-Token`, verified by the Caller resolver
(issuer, JWKS signature, audience, and the token's binding to this project). The answer is
our end-user token for that user, which the rest of the Platform API accepts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from tollhouse.db.session import SessionDep
from tollhouse.identity import service as identity
from tollhouse.identity.caller import identity_context
from tollhouse.metering.guards import RateLimitedEndUser
from tollhouse.platform_api import customers, wire

router = APIRouter(tags=["platform"])


@router.post("/oauth/complete")
async def complete_sign_in(
    caller: RateLimitedEndUser, request: Request, session: SessionDep
) -> dict[str, Any]:
    assert caller.user is not None
    context = identity_context(request)
    user = await identity.reload(session, caller.user)
    minted = await customers.mint_token(
        session, context.end_user_signer, user, context.settings.end_user_token_minutes * 60
    )
    return {
        "success": True,
        "userId": user.external_id,
        "token": minted.token,
        "expiresAt": wire.iso(datetime.fromtimestamp(minted.expires_at, UTC)),
    }
