"""The one place that decides who is calling (DESIGN.md, "The Caller").

Checked in this order, first credential present wins, and a present-but-bad credential is
refused rather than ignored:

1. `X-Admin-Key`                                        → admin
2. `X-Gateway-Signature` + `X-Gateway-Timestamp` (HMAC) → service with `X-User-Id`, or system
3. `X-Service-Key` (+ `X-User-ID`)                      → service with that user, or system
4. `Authorization: Bearer …`                            → platform secret key (sk_…), or a JWT:
                                                          an external issuer's, or our own
5. `X-Publishable-Key`                                  → platform publishable key
6. nothing                                              → anonymous

Platform keys (4, 5) name a project; an end-user token beside them (`X-Clerk-Token`,
`X-User-Token` or `X-End-User-Token`) names one of that project's end users.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.config import IssuerConfig, Settings
from tollhouse.db.engine import Database
from tollhouse.db.session import database
from tollhouse.identity import gateway_signing, service
from tollhouse.identity.end_user_tokens import ISSUER as END_USER_ISSUER
from tollhouse.identity.end_user_tokens import (
    EndUserClaims,
    EndUserSigner,
    InvalidEndUserToken,
    ProjectIssuer,
    ProjectIssuers,
)
from tollhouse.identity.errors import (
    AdminDisabled,
    AdminKeyRequired,
    AuthenticationRequired,
    CrossSiteRequest,
    GatewaySignatureRequired,
    InvalidAdminKey,
    InvalidApiKey,
    InvalidGatewaySignature,
    InvalidServiceKey,
    InvalidToken,
    PlatformKeyRequired,
    PublishableKeyMismatch,
    SecretKeyRequired,
    ServiceKeyNotConfigured,
    ServiceKeyRequired,
)
from tollhouse.identity.issuers import ExternalIdentity, IssuerRegistry
from tollhouse.identity.models import User
from tollhouse.identity.tokens import ACCESS_ISSUER, AccessClaims, verify_access_token
from tollhouse.identity.user_cache import UserCache, VerifiedFor
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import secrets_equal
from tollhouse.kit.invalidation import Invalidation
from tollhouse.kit.ttl_cache import TTLCache
from tollhouse.tenancy import developers
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.developers import PERSONAL_TOKEN_PREFIX, TokenKind
from tollhouse.tenancy.key_usage import KeyUsage
from tollhouse.tenancy.service import KeyMatch

PLATFORM_KEY_PREFIXES = ("sk_test_", "sk_live_", "pk_test_", "pk_live_")
# The console's session cookie (set by the Developer API's sign-in and log-in).
SESSION_COOKIE = "tollhouse_session"


class CallerKind(StrEnum):
    ANONYMOUS = "anonymous"
    SYSTEM = "system"
    SERVICE = "service"
    USER = "user"
    ADMIN = "admin"
    SECRET_KEY = "secret_key"  # noqa: S105 - a caller kind, not a secret
    PUBLISHABLE_KEY = "publishable_key"
    DEVELOPER = "developer"


@dataclass(frozen=True, slots=True)
class Caller:
    kind: CallerKind
    project_id: str
    user: User | None = None
    metered: bool = False
    # Which internal service a service key belongs to ("gateway" or "billing").
    service: str | None = None
    # Platform callers: the key that was presented and what it belongs to.
    key: KeyMatch | None = None
    # The plan an end-user token claims (the effective plan is metering's decision).
    plan_claim: str | None = None
    # Platform API and console callers: whose platform this is.
    platform_id: str | None = None
    developer_id: str | None = None

    @property
    def is_service(self) -> bool:
        return self.kind in (CallerKind.SERVICE, CallerKind.SYSTEM)


@dataclass(frozen=True, slots=True)
class IdentityContext:
    """What the resolver needs from the app, built once at start-up."""

    settings: Settings
    issuers: IssuerRegistry
    home_project_id: str
    token_settings: service.TokenSettings
    user_cache: UserCache
    end_user_signer: EndUserSigner
    project_issuers: ProjectIssuers
    key_cache: TTLCache[str, KeyMatch]
    user_created_hooks: tuple[service.UserCreatedHook, ...] = ()
    # Drops the caches above in every process (wiring.cache_invalidation); local by default.
    invalidation: Invalidation = field(default_factory=Invalidation)
    # API keys' last use, written in batches off the request path.
    key_usage: KeyUsage = field(default_factory=KeyUsage)

    @property
    def pepper(self) -> str:
        return self.token_settings.pepper

    def forget_key(self, session: AsyncSession, key_id: str) -> None:
        """A key `session` rolls or revokes is trusted by no process once it commits."""
        self.invalidation.on_commit(session, "key", key_id)

    def forget_user(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        """A user `session` deactivates, erases or re-plans is re-read everywhere on commit."""
        self.invalidation.on_commit(session, "user", str(user_id))


def identity_context(request: Request) -> IdentityContext:
    return cast(IdentityContext, request.app.state.identity)


async def resolve_caller(request: Request) -> Caller:
    """The request's Caller, resolved once however many dependencies ask for it."""
    state = request.scope.setdefault("state", {})
    caller = state.get("caller")
    if caller is None:
        context = identity_context(request)
        caller = await _resolve(request, _UserLookup(context, database(request)), context)
        state["caller"] = caller
        state["caller_kind"] = caller.kind.value
    assert isinstance(caller, Caller)
    return caller


class _UserLookup:
    """Finds the caller's user: from the cache, else in a short session of its own.

    Its own session keeps caller resolution out of the route's unit of work, and a request
    answered from the cache touches no database at all.
    """

    def __init__(self, context: IdentityContext, db: Database) -> None:
        self.context = context
        self.db = db

    async def __call__(
        self,
        via: str,
        reference: str,
        load: Callable[[AsyncSession], Awaitable[User]],
        project_id: str | None = None,
    ) -> User:
        cache = self.context.user_cache
        project_id = project_id or self.context.home_project_id
        cached = cache.get(project_id, via, reference)
        if cached is not None:
            return cached
        async with self.db.session() as session:
            return cache.put(project_id, via, reference, await load(session))

    async def key(self, plaintext: str) -> KeyMatch | None:
        """The active key behind a presented string, cached no longer than its own expiry."""
        cache = self.context.key_cache
        match = cache.get(plaintext)
        if match is None:
            async with self.db.session() as session:
                match = await tenancy.find_active_key(
                    session,
                    self.context.pepper,
                    plaintext,
                    gate=tenancy.PlanGate.from_settings(self.context.settings),
                )
            if match is None:
                return None
            ttl = self.context.settings.caller_cache_seconds
            if match.expires_at is not None:
                ttl = min(ttl, (match.expires_at - utcnow()).total_seconds())
            cache.put(plaintext, match, ttl)
        self.context.key_usage.touch(match.key_id)
        return match


async def _resolve(request: Request, lookup: _UserLookup, context: IdentityContext) -> Caller:
    settings = context.settings
    headers = request.headers
    home = context.home_project_id

    if (admin_key := headers.get("x-admin-key")) is not None:
        expected = settings.secret("admin_api_key")
        if expected is None:
            raise AdminDisabled()
        if not secrets_equal(admin_key, expected):
            raise InvalidAdminKey()
        return Caller(CallerKind.ADMIN, home)

    signature = headers.get("x-gateway-signature")
    timestamp = headers.get("x-gateway-timestamp")
    if signature is not None or timestamp is not None:
        return await _signed_gateway_caller(request, lookup, context, signature, timestamp)

    if (service_key := headers.get("x-service-key")) is not None:
        service_name = _service_named_by(service_key, settings)
        return await _service_caller(
            lookup,
            context,
            headers.get("x-user-id"),
            metered=settings.relay_metered and not _meters_itself(request),
            service_name=service_name,
        )

    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationRequired("Missing or invalid Authorization header.")
        if credential.startswith(PLATFORM_KEY_PREFIXES):
            return await _platform_key_caller(request, lookup, context, credential, "secret")
        if credential.startswith(PERSONAL_TOKEN_PREFIX):
            return await _developer_caller(lookup, context, credential, "personal")
        return await _bearer_token_caller(lookup, context, credential)

    if (publishable_key := headers.get("x-publishable-key")) is not None:
        return await _platform_key_caller(request, lookup, context, publishable_key, "publishable")

    if (console_session := request.cookies.get(SESSION_COOKIE)) is not None:
        _refuse_cross_site(request)
        return await _developer_caller(lookup, context, console_session, "session")

    return Caller(CallerKind.ANONYMOUS, home)


async def _developer_caller(
    lookup: _UserLookup, context: IdentityContext, credential: str, kind: TokenKind
) -> Caller:
    """A developer of the console, by session cookie or personal access token (`dev_…`)."""
    async with lookup.db.session() as session:
        developer = await developers.developer_for_credential(
            session, context.pepper, credential, kind
        )
    if developer is None:
        raise InvalidToken("Invalid, expired or revoked console credential.")
    return Caller(
        CallerKind.DEVELOPER,
        context.home_project_id,
        platform_id=developer.platform_id,
        developer_id=developer.id,
    )


def _refuse_cross_site(request: Request) -> None:
    """A session cookie rides along on cross-site requests; their writes are refused.

    SameSite=Lax already keeps the cookie off cross-site POSTs in current browsers; the
    Origin check covers the rest.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if origin is not None and origin.split("://", 1)[-1] != host:
        raise CrossSiteRequest()


END_USER_TOKEN_HEADERS = ("x-clerk-token", "x-user-token", "x-end-user-token")


async def _platform_key_caller(
    request: Request,
    lookup: _UserLookup,
    context: IdentityContext,
    presented: str,
    expected: str,
) -> Caller:
    """A project's key, and the end user named by the token beside it, if any."""
    match = await lookup.key(presented.strip())
    if match is None or match.kind != expected:
        if expected == "publishable":
            raise InvalidApiKey("Invalid publishable key.")
        raise InvalidApiKey()
    # The platform-subscription gate: one comparison, on the cached match.
    if match.platform_blocked_after is not None and utcnow() >= match.platform_blocked_after:
        raise tenancy.SubscriptionExpired()
    kind = CallerKind.SECRET_KEY if expected == "secret" else CallerKind.PUBLISHABLE_KEY
    token = next(
        (value for name in END_USER_TOKEN_HEADERS if (value := request.headers.get(name))), None
    )
    if token is None:
        return Caller(
            kind, match.project_id, key=match, metered=True, platform_id=match.platform_id
        )
    claims = await _end_user_claims(lookup, context, match, token.strip())
    user = await lookup(
        "external_id",
        claims.subject,
        lambda session: service.end_user_for_claims(session, match.project_id, claims),
        project_id=match.project_id,
    )
    return Caller(
        kind,
        match.project_id,
        user,
        metered=True,
        key=match,
        plan_claim=claims.plan,
        platform_id=match.platform_id,
    )


async def _end_user_claims(
    lookup: _UserLookup, context: IdentityContext, match: KeyMatch, token: str
) -> EndUserClaims:
    """Verify an end-user token for the key's project: ours, or the project's own issuer's."""
    issuer: ProjectIssuer | None = None
    if not context.end_user_signer.owns(token):
        if not (match.end_user_issuer and match.end_user_jwks_url):
            raise InvalidEndUserToken()
        issuer = ProjectIssuer(
            match.end_user_issuer, match.end_user_jwks_url, match.end_user_audience
        )
    # Verified for this project and issuer only: a project's own IdP vouches for nobody else.
    purpose = VerifiedFor(
        "end-user", END_USER_ISSUER if issuer is None else issuer.issuer, match.project_id
    )
    claims = context.user_cache.verified(purpose, token)
    if not isinstance(claims, EndUserClaims):
        if issuer is None:
            claims = context.end_user_signer.verify(token)
        else:
            claims = await context.project_issuers.verify(token, issuer)
        context.user_cache.remember_verified(purpose, token, claims, claims.expires_at)
    # A token names the project it was issued for (ours in `aud`, others by a publishable-key
    # claim) and works with that project's keys only.
    bound_to = claims.project_id
    if bound_to is None and claims.publishable_key is not None:
        pk = await lookup.key(claims.publishable_key)
        bound_to = pk.project_id if pk is not None else "unknown"
    if bound_to is not None and bound_to != match.project_id:
        raise PublishableKeyMismatch()
    return claims


def _service_named_by(key: str, settings: Settings) -> str:
    """Which internal service a plain X-Service-Key belongs to, or a refusal."""
    billing = settings.secret("billing_api_key")
    if billing is not None and secrets_equal(key, billing):
        return "billing"
    if settings.require_signed_gateway:
        raise GatewaySignatureRequired()
    expected = settings.secret("flash_service_key")
    if expected is None:
        raise ServiceKeyNotConfigured()
    if not secrets_equal(key, expected):
        raise InvalidServiceKey()
    return "gateway"


async def _signed_gateway_caller(
    request: Request,
    lookup: _UserLookup,
    context: IdentityContext,
    signature: str | None,
    timestamp: str | None,
) -> Caller:
    secret = context.settings.secret("gateway_signing_secret")
    if secret is None:
        raise InvalidGatewaySignature(
            "Invalid gateway signature: GATEWAY_SIGNING_SECRET is not configured."
        )
    if signature is None or timestamp is None:
        raise InvalidGatewaySignature(
            "Invalid gateway signature: both X-Gateway-Signature and X-Gateway-Timestamp "
            "are required."
        )
    user_reference = request.headers.get("x-user-id") or ""
    gateway_signing.verify(
        secret=secret,
        signature=signature,
        timestamp=timestamp,
        method=request.method,
        # The path as routed (no query), read from the scope: building request.url parses it.
        path=request.scope.get("root_path", "") + request.scope["path"],
        user_id=user_reference,
        now=time.time(),
        tolerance_seconds=context.settings.gateway_signature_tolerance_seconds,
    )
    return await _service_caller(
        lookup,
        context,
        user_reference or None,
        metered=not _meters_itself(request),
        service_name="gateway",
    )


def _meters_itself(request: Request) -> bool:
    """`X-Gateway-Metered: true` (flash-contract §3.3): the calling service charges its user
    itself. Read only for trusted callers (a valid signature or service key)."""
    return request.headers.get("x-gateway-metered", "").lower() == "true"


async def _service_caller(
    lookup: _UserLookup,
    context: IdentityContext,
    user_reference: str | None,
    *,
    metered: bool,
    service_name: str,
) -> Caller:
    project_id = context.home_project_id
    if not user_reference:
        return Caller(CallerKind.SYSTEM, project_id, service=service_name)
    user = await lookup(
        "reference",
        user_reference,
        lambda session: service.find_user(session, project_id, user_reference),
    )
    return Caller(CallerKind.SERVICE, project_id, user, metered=metered, service=service_name)


async def _bearer_token_caller(lookup: _UserLookup, context: IdentityContext, token: str) -> Caller:
    home = context.home_project_id
    issuer = context.issuers.find(token)
    if issuer is not None:
        identity = await _external_identity(context, issuer, token)
        user = await lookup(
            "external_id",
            identity.external_id,
            lambda session: service.user_for_identity(
                session, home, identity, context.user_created_hooks
            ),
        )
    else:
        user_id = _access_claims(context, token).user_id
        user = await lookup(
            "id", str(user_id), lambda session: service.active_user_by_id(session, home, user_id)
        )
    return Caller(CallerKind.USER, home, user, metered=True)


async def _external_identity(
    context: IdentityContext, issuer: IssuerConfig, token: str
) -> ExternalIdentity:
    purpose = VerifiedFor("external", issuer.issuer, context.home_project_id)
    identity = context.user_cache.verified(purpose, token)
    if not isinstance(identity, ExternalIdentity):
        identity = await context.issuers.verify(token, issuer)
        context.user_cache.remember_verified(purpose, token, identity, int(identity.claims["exp"]))
    return identity


def _access_claims(context: IdentityContext, token: str) -> AccessClaims:
    purpose = VerifiedFor("access", ACCESS_ISSUER, context.home_project_id)
    claims = context.user_cache.verified(purpose, token)
    if not isinstance(claims, AccessClaims):
        claims = verify_access_token(
            context.token_settings.secret, token, context.user_cache.clock()
        )
        context.user_cache.remember_verified(purpose, token, claims, claims.expires_at)
    return claims


CallerDep = Annotated[Caller, Depends(resolve_caller)]


async def gateway_caller(request: Request) -> Caller:
    """Any authenticated caller of the Gateway API; anonymous only when AUTH_ENABLED=false."""
    caller = await resolve_caller(request)
    if caller.kind is CallerKind.ANONYMOUS and identity_context(request).settings.auth_enabled:
        raise AuthenticationRequired()
    return caller


# The guards below resolve the caller themselves instead of depending on CallerDep: one level
# of dependency less on every authenticated request.


async def user_caller(request: Request) -> Caller:
    caller = await resolve_caller(request)
    if caller.user is None:
        raise AuthenticationRequired()
    return caller


async def service_caller(request: Request) -> Caller:
    caller = await resolve_caller(request)
    if not caller.is_service:
        raise ServiceKeyRequired()
    return caller


async def billing_caller(request: Request) -> Caller:
    caller = await resolve_caller(request)
    if caller.service != "billing":
        raise InvalidServiceKey("This endpoint needs X-Service-Key set to BILLING_API_KEY.")
    return caller


async def developer_caller(request: Request) -> Caller:
    caller = await resolve_caller(request)
    if caller.kind is not CallerKind.DEVELOPER:
        raise AuthenticationRequired(
            "Sign in to the console (session cookie) or send Authorization: Bearer dev_…"
        )
    return caller


async def admin_caller(request: Request) -> Caller:
    caller = await resolve_caller(request)
    if caller.kind is not CallerKind.ADMIN:
        raise AdminKeyRequired()
    return caller


PLATFORM_KINDS = (CallerKind.SECRET_KEY, CallerKind.PUBLISHABLE_KEY)


async def platform_caller(request: Request) -> Caller:
    """A Platform API caller: a project's publishable or secret key."""
    caller = await resolve_caller(request)
    if caller.kind is CallerKind.ANONYMOUS:
        raise AuthenticationRequired(
            "Missing authentication: send X-Publishable-Key or a secret key."
        )
    if caller.kind not in PLATFORM_KINDS:
        raise PlatformKeyRequired()
    return caller


async def secret_key_caller(request: Request) -> Caller:
    # As in the Platform API: a publishable key on a secret-key route is refused before the
    # key is even looked up, so probing keys through these routes learns nothing.
    headers = request.headers
    if "authorization" not in headers and "x-publishable-key" in headers:
        raise SecretKeyRequired()
    caller = await platform_caller(request)
    if caller.kind is not CallerKind.SECRET_KEY:
        raise SecretKeyRequired()
    return caller


async def end_user_caller(request: Request) -> Caller:
    """A Platform API caller acting for one of the project's end users (token required)."""
    caller = await platform_caller(request)
    if caller.user is None:
        raise InvalidEndUserToken()
    return caller


GatewayCaller = Annotated[Caller, Depends(gateway_caller)]
PlatformCaller = Annotated[Caller, Depends(platform_caller)]
SecretKeyCaller = Annotated[Caller, Depends(secret_key_caller)]
EndUserCaller = Annotated[Caller, Depends(end_user_caller)]
DeveloperCaller = Annotated[Caller, Depends(developer_caller)]
UserCaller = Annotated[Caller, Depends(user_caller)]
ServiceCaller = Annotated[Caller, Depends(service_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
BillingCaller = Annotated[Caller, Depends(billing_caller)]
