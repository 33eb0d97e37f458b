"""Developer accounts: sign-up, log-in, log-out, me, personal access tokens, the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Cookie, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.console.deps import ConsoleDep, Limit, Offset, pepper_of, settings_of
from tollhouse.console.schemas import (
    AuditOut,
    AuditPage,
    AuthResponse,
    DeveloperOut,
    LoginRequest,
    MeResponse,
    PlatformOut,
    SignupRequest,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import SESSION_COOKIE
from tollhouse.metering.guards import limit_attempts
from tollhouse.tenancy import developers
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Developer

router = APIRouter(tags=["console"])

# Several developers may share an address (an office, a NAT); the per-account limit is the
# tight one.
LOGINS_PER_ADDRESS = 5


def _client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def begin_session(
    session: AsyncSession, pepper: str, developer: Developer, action: str
) -> developers.IssuedToken:
    """A new console session, audited as `action` (sign-up or log-in)."""
    issued = await developers.start_session(session, pepper, developer)
    await tenancy.record(session, developer.platform_id, action, developer_id=developer.id)
    return issued


async def _open_session(
    session: AsyncSession, request: Request, response: Response, developer: Developer, action: str
) -> AuthResponse:
    """Start a console session: cookie for browsers, token in the body for scripts."""
    issued = await begin_session(session, pepper_of(request), developer, action)
    response.set_cookie(
        SESSION_COOKIE,
        issued.plaintext,
        max_age=int(developers.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return AuthResponse(developer=DeveloperOut.of(developer), token=issued.plaintext)


async def limit_signups(request: Request) -> None:
    # Each sign-up hashes a password (argon2id, deliberately slow): capped per address first.
    limit = settings_of(request).console_signups_per_minute
    await limit_attempts(request, f"signup-from:{_client_address(request)}", limit)


async def limit_logins(request: Request, email: str) -> None:
    # Password guessing is slowed per account and per client address, before any hashing.
    limit = settings_of(request).console_login_attempts_per_minute
    await limit_attempts(request, f"login:{developers.normalise_email(email)}", limit)
    await limit_attempts(
        request, f"login-from:{_client_address(request)}", limit * LOGINS_PER_ADDRESS
    )


@router.post("/auth/signup", status_code=201)
async def signup(
    body: SignupRequest, request: Request, response: Response, session: SessionDep
) -> AuthResponse:
    await limit_signups(request)
    developer = await developers.sign_up(session, body.email, body.password)
    return await _open_session(session, request, response, developer, "developer.signup")


@router.post("/auth/login")
async def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep
) -> AuthResponse:
    await limit_logins(request, body.email)
    developer = await developers.log_in(session, body.email, body.password)
    return await _open_session(session, request, response, developer, "developer.login")


@router.post("/auth/logout", status_code=204)
async def logout(
    console: ConsoleDep,
    response: Response,
    session_cookie: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
) -> None:
    # The caller is already resolved; the cookie is read only to name the session to end.
    if session_cookie:
        await developers.end_session(console.session, console.pepper, session_cookie)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    await console.audit("developer.logout")


@router.get("/me")
async def me(console: ConsoleDep) -> MeResponse:
    developer = await developers.developer_by_id(console.session, console.developer_id)
    platform = await developers.platform_of(console.session, developer)
    return MeResponse(developer=DeveloperOut.of(developer), platform=PlatformOut.of(platform))


@router.get("/tokens")
async def list_tokens(console: ConsoleDep) -> list[TokenOut]:
    tokens = await developers.personal_tokens(console.session, console.developer_id)
    return [TokenOut.of(token) for token in tokens]


@router.post("/tokens", status_code=201)
async def create_token(body: TokenCreate, console: ConsoleDep) -> TokenCreated:
    issued = await developers.create_personal_token(
        console.session, console.pepper, console.developer_id, body.name, body.expires_in_days
    )
    token = issued.token
    await console.audit("token.create", str(token.id), display=token.display, name=token.name)
    return TokenCreated(token=TokenOut.of(token), plaintext=issued.plaintext)


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: uuid.UUID, console: ConsoleDep) -> None:
    token = await developers.revoke_personal_token(console.session, console.developer_id, token_id)
    await console.audit("token.revoke", str(token.id), display=token.display)


@router.get("/audit")
async def audit_log(console: ConsoleDep, limit: Limit = 50, offset: Offset = 0) -> AuditPage:
    total, rows = await tenancy.audit_entries(
        console.session, console.platform_id, limit=limit, offset=offset
    )
    return AuditPage(
        limit=limit,
        offset=offset,
        total=total,
        entries=[AuditOut.model_validate(row, from_attributes=True) for row in rows],
    )
