"""Gateway API identity routes: /api/v1/users/* and /api/v1/auth/*."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tollhouse.config import APPLE_ISSUER, GOOGLE_ISSUER
from tollhouse.db.session import SessionDep
from tollhouse.identity import privacy, service
from tollhouse.identity.caller import ServiceCaller, UserCaller, identity_context
from tollhouse.identity.errors import InvalidToken, SignInDisabled
from tollhouse.identity.schemas import (
    AppleSignInRequest,
    DetailResponse,
    ErasedResponse,
    GoogleSignInRequest,
    MeResponse,
    RefreshRequest,
    ResolveUserRequest,
    ResolveUserResponse,
    ServiceTokenRequest,
    TokenPairResponse,
)
from tollhouse.identity.service import TokenPair

users = APIRouter(prefix="/api/v1/users", tags=["users"])
auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _pair(pair: TokenPair) -> TokenPairResponse:
    return TokenPairResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    )


@users.post("/resolve", response_model=ResolveUserResponse)
async def resolve_user(
    body: ResolveUserRequest, caller: ServiceCaller, request: Request, session: SessionDep
) -> ResolveUserResponse:
    """Find or create the user with this external id (service key or signed gateway)."""
    user, created = await service.resolve_user(
        session,
        caller.project_id,
        body.external_id,
        email=body.email,
        display_name=body.display_name,
        hooks=identity_context(request).user_created_hooks,
    )
    return ResolveUserResponse(user_id=user.id, created=created)


@users.get("/me/export")
async def export_me(caller: UserCaller, session: SessionDep) -> dict[str, Any]:
    """Everything we hold about the caller, one section per domain (GDPR art. 15 and 20)."""
    assert caller.user is not None
    return await privacy.export_user(session, await service.reload(session, caller.user))


@users.delete("/me", response_model=ErasedResponse)
async def erase_me(caller: UserCaller, request: Request, session: SessionDep) -> ErasedResponse:
    """Erase the caller's personal data; financial records stay, anonymised (GDPR art. 17)."""
    assert caller.user is not None
    identity = identity_context(request)
    await privacy.erase_user(session, await service.reload(session, caller.user), identity.pepper)
    identity.forget_user(session, caller.user.id)
    return ErasedResponse(id=caller.user.id, deleted=True, message="Personal data erased")


async def _external_sign_in(
    request: Request, session: SessionDep, token: str, issuer_name: str, setting: str
) -> TokenPairResponse:
    context = identity_context(request)
    issuer = context.issuers.get(issuer_name)
    if issuer is None:
        raise SignInDisabled(f"This sign-in method is not configured: set {setting}.")
    if context.issuers.find(token) is not issuer:
        raise InvalidToken(f"Invalid identity token: it was not issued by {issuer_name}")
    identity = await context.issuers.verify(token, issuer)
    user = await service.sign_in_external(
        session, context.home_project_id, identity, context.user_created_hooks
    )
    return _pair(await service.sign_in(session, user, context.token_settings))


@auth.post("/apple", response_model=TokenPairResponse)
async def sign_in_with_apple(
    body: AppleSignInRequest, request: Request, session: SessionDep
) -> TokenPairResponse:
    return await _external_sign_in(
        request, session, body.identity_token, APPLE_ISSUER, "APPLE_BUNDLE_ID"
    )


@auth.post("/google", response_model=TokenPairResponse)
async def sign_in_with_google(
    body: GoogleSignInRequest, request: Request, session: SessionDep
) -> TokenPairResponse:
    return await _external_sign_in(
        request, session, body.id_token, GOOGLE_ISSUER, "GOOGLE_OAUTH_CLIENT_ID"
    )


@auth.post("/token", response_model=TokenPairResponse)
async def issue_token(
    body: ServiceTokenRequest, caller: ServiceCaller, request: Request, session: SessionDep
) -> TokenPairResponse:
    """A token pair for an existing user, for services that sign users in themselves."""
    user = await service.find_user(session, caller.project_id, body.user_id)
    return _pair(await service.sign_in(session, user, identity_context(request).token_settings))


@auth.post("/refresh", response_model=TokenPairResponse)
async def refresh(body: RefreshRequest, request: Request, session: SessionDep) -> TokenPairResponse:
    context = identity_context(request)
    pair = await service.rotate_refresh_token(
        session, context.home_project_id, body.refresh_token, context.token_settings
    )
    return _pair(pair)


@auth.post("/logout", response_model=DetailResponse)
async def logout(body: RefreshRequest, request: Request, session: SessionDep) -> DetailResponse:
    await service.log_out(
        session, body.refresh_token, identity_context(request).token_settings.pepper
    )
    return DetailResponse(detail="Logged out")


@auth.get("/me", response_model=MeResponse)
async def me(caller: UserCaller) -> MeResponse:
    user = caller.user
    assert user is not None
    return MeResponse(
        id=user.id,
        external_id=user.external_id,
        email=user.email,
        display_name=user.display_name,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


@auth.delete("/account", response_model=DetailResponse)
async def deactivate_account(
    caller: UserCaller, request: Request, session: SessionDep
) -> DetailResponse:
    assert caller.user is not None
    await service.deactivate(session, await service.reload(session, caller.user))
    identity_context(request).forget_user(session, caller.user.id)
    return DetailResponse(detail="Account deactivated")
