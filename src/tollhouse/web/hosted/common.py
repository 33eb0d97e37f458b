"""What every hosted page needs: its project (from `pk`), its checked `redirect`, the
browser's end-user session, rate limits, mail, and the hand-back to the app with a token.

A page never trusts `redirect`: it must be an origin on the project's allowed list (the
console manages it), since the token rides along in the URL.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity import accounts
from tollhouse.identity.caller import identity_context
from tollhouse.identity.models import User
from tollhouse.kit.errors import TollhouseError
from tollhouse.kit.mail import Mail, Mailer
from tollhouse.metering.guards import limit_attempts
from tollhouse.platform_api import customers
from tollhouse.tenancy import origins
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Project
from tollhouse.web.cookies import SignedCookie

TOKEN_PARAM = "__clerk_jwt"  # noqa: S105 - the query parameter the SDK reads
SESSION_COOKIE = "tollhouse_end_user"
PK_MAX = 120
# Per client address and per project, multiples of the per-address-of-mail limit.
ATTEMPTS_PER_CLIENT = 5
ATTEMPTS_PER_PROJECT = 50


class PageRefused(TollhouseError):
    """A hosted page that cannot be shown at all; rendered as an error page, not JSON."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status
        self.title = title


@dataclass(frozen=True, slots=True)
class HostedPage:
    request: Request
    session: AsyncSession
    project: Project
    pk: str
    redirect: str | None

    @property
    def query(self) -> str:
        """`pk` and `redirect` for the links between hosted pages."""
        params = {"pk": self.pk}
        if self.redirect:
            params["redirect"] = self.redirect
        return urlencode(params)

    @property
    def redirect_origin(self) -> list[str]:
        origin = origins.origin_of(self.redirect) if self.redirect else None
        return [origin] if origin else []

    def link(self, path: str, **extra: str) -> str:
        return f"{path}?{self.query}" + (f"&{urlencode(extra)}" if extra else "")

    def absolute(self, path: str, **extra: str) -> str:
        return str(self.request.base_url).rstrip("/") + self.link(path, **extra)


async def hosted_page(
    request: Request, session: AsyncSession, *, redirect_required: bool = True
) -> HostedPage:
    """The page's project from `pk` (active publishable keys only) and its allowed redirect."""
    pk = request.query_params.get("pk", "").strip()
    redirect = request.query_params.get("redirect", "").strip() or None
    if not pk or len(pk) > PK_MAX or not pk.startswith(("pk_test_", "pk_live_")):
        raise PageRefused(400, "Missing app key", "This link has no valid publishable key (pk).")
    context = identity_context(request)
    gate = tenancy.PlanGate.from_settings(context.settings)
    match = await tenancy.find_active_key(session, context.pepper, pk, gate=gate)
    if match is None or match.kind != "publishable":
        raise PageRefused(
            404, "Unknown app", "This publishable key is unknown or has been revoked."
        )
    blocked = match.platform_blocked_after
    if blocked is not None and datetime.now(UTC) >= blocked:
        raise PageRefused(403, "App unavailable", "This app's account is not active.")
    project = await session.get_one(Project, match.project_id)
    if redirect is None and redirect_required:
        raise PageRefused(400, "Missing redirect", "This link does not say where to go back to.")
    if redirect is not None and not await origins.is_allowed(
        session, project.id, redirect if origins.origin_of(redirect) else None
    ):
        raise PageRefused(
            400,
            "Redirect not allowed",
            "This app has not allowed sign-ins to return to that address. "
            "Its developer can add the origin in the console.",
        )
    return HostedPage(request, session, project, pk, redirect)


# --- the browser's session on the hosted pages ---------------------------------------------


def _session_cookie(request: Request) -> SignedCookie:
    hours = identity_context(request).settings.hosted_session_hours
    return SignedCookie(SESSION_COOKIE, "end-user session", hours * 3600)


async def signed_in_user(page: HostedPage) -> User | None:
    """The end user this browser signed in as, on this project, if the session still holds."""
    payload = _session_cookie(page.request).read(page.request)
    if payload is None or payload.get("p") != page.project.id:
        return None
    try:
        user_id = uuid.UUID(str(payload.get("u")))
        since = datetime.fromtimestamp(float(payload.get("t", 0)), UTC)
    except (ValueError, TypeError, OverflowError):
        return None
    return await accounts.user_of_session(page.session, page.project.id, user_id, since)


def with_token(redirect: str, token: str) -> str:
    """`redirect` with `__clerk_jwt=<token>` added (any earlier one replaced)."""
    parts = urlsplit(redirect)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != TOKEN_PARAM]
    query.append((TOKEN_PARAM, token))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def hand_back(page: HostedPage, user: User) -> RedirectResponse:
    """Back to the app with a fresh token (the effective plan now), signed in here too."""
    assert page.redirect is not None
    context = identity_context(page.request)
    minted = await customers.mint_token(
        page.session, context.end_user_signer, user, context.settings.end_user_token_minutes * 60
    )
    response = RedirectResponse(with_token(page.redirect, minted.token), status_code=303)
    remember_sign_in(page, user, response)
    return response


def remember_sign_in(page: HostedPage, user: User, response: Response) -> None:
    _session_cookie(page.request).write(
        page.request, response, {"p": page.project.id, "u": str(user.id), "t": time.time()}
    )


def sign_out(page: HostedPage, response: Response) -> None:
    _session_cookie(page.request).clear(page.request, response)


# --- limits and mail ------------------------------------------------------------------------


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def limit_auth_attempts(page: HostedPage, email: str) -> None:
    """Sign-in and sign-up attempts per address, per client and per project (429 beyond)."""
    limit = identity_context(page.request).settings.hosted_auth_attempts_per_minute
    project = page.project.id
    email = accounts.normalise_email(email)
    await limit_attempts(page.request, f"hosted:{project}:{email}", limit)
    await limit_attempts(
        page.request, f"hosted-from:{_client(page.request)}", limit * ATTEMPTS_PER_CLIENT
    )
    await limit_attempts(page.request, f"hosted-project:{project}", limit * ATTEMPTS_PER_PROJECT)


def mailer(request: Request) -> Mailer:
    return cast(Mailer, request.app.state.mailer)


async def send_mail(page: HostedPage, recipient: str, subject: str, body: str) -> None:
    await mailer(page.request).send(
        page.session, Mail(recipient, f"{page.project.name}: {subject}", body)
    )
