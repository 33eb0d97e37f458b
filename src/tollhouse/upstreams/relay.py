"""The clockchain's and the operator's upstreams: one request, in the order that keeps money
and upstreams safe.

1. the path, parsed once and normalised (400 `invalid_path`), `kit/proxy_paths.py`;
2. the route policy decides on that path (404 unlisted), `policy.py`;
3. the rule's access: anyone, an authenticated caller (401), the admin key (403);
4. the outgoing headers (400 `invalid_header_value`), `kit/proxy_headers.py`;
5. the price held and committed (402), a free charge for unmetered callers;
6. forwarded; the hold is captured when the answer passes the rule's charge rule
   (`charge_rule.py`, 2xx by default) and released on every other ending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity.caller import (
    Caller,
    CallerKind,
    admin_caller,
    gateway_caller,
    resolve_caller,
)
from tollhouse.kit import proxy_paths
from tollhouse.kit.forwarding import IDEMPOTENT, Settle, Upstream, prepare
from tollhouse.kit.proxy_headers import Identity
from tollhouse.ledger.charging import Charge, hold_charge
from tollhouse.upstreams.charge_rule import ChargeRule
from tollhouse.upstreams.policy import Access, RoutePolicy, RouteRule

# The ledger's transaction type for calls charged through an upstream.
TRANSACTION_TYPE = "api_spend"


@dataclass(frozen=True, slots=True)
class Relay:
    """An upstream served at `prefix`, under its route policy."""

    prefix: str
    upstream: Upstream
    policy: RoutePolicy
    writer_token: str | None = None
    promises_json: bool = False
    prefix_segments: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix_segments", proxy_paths.segments_of(self.prefix))

    def credentials(self, rule: RouteRule, method: str) -> Mapping[str, str]:
        """What the upstream is told about us: its configured headers, and its writer token
        on writes — unless the rule sends the call as an anonymous one."""
        if not rule.credentials:
            return {}
        injected = dict(self.upstream.config.inject_headers)
        if self.writer_token and method not in IDEMPOTENT:
            injected["Authorization"] = f"Bearer {self.writer_token}"
        return injected

    def location(self, value: str, sent_to: str) -> str | None:
        return proxy_paths.rewrite_location(
            value, sent_to, self.upstream.config.base_url, self.prefix
        )


def request_path(request: Request) -> proxy_paths.ProxyPath:
    """The request's path as the client sent it, normalised (400 when it is not clean)."""
    raw: bytes | None = request.scope.get("raw_path")
    return proxy_paths.parse(raw if raw is not None else request.url.path.encode())


def identity_of(caller: Caller) -> Identity | None:
    """Who the upstream is told is calling (None: anonymous)."""
    if caller.user is None:
        return (
            None if caller.kind is CallerKind.ANONYMOUS else Identity(project_id=caller.project_id)
        )
    return Identity(str(caller.user.id), caller.user.email, caller.project_id)


async def authorise(request: Request, access: Access) -> Caller:
    if access is Access.ADMIN:
        return await admin_caller(request)
    if access is Access.USER:
        return await gateway_caller(request)
    return await resolve_caller(request)


def settle_charge(charge: Charge, rule: ChargeRule) -> Settle:
    """Capture the hold when the answer is one the rule pays for, release it otherwise."""

    async def settle(status: int | None) -> None:
        await (charge.capture() if rule.keeps(status) else charge.release())

    return settle


async def relay(request: Request, session: AsyncSession, served: Relay) -> Response:
    path = request_path(request)
    if not path.starts_with(served.prefix_segments):
        raise proxy_paths.InvalidPath()
    rest = path.after(len(served.prefix_segments))
    method = request.method.upper()
    rule = served.policy.decide(method, rest)
    caller = await authorise(request, rule.access)
    outgoing = prepare(
        request,
        rest.encoded,
        identity=identity_of(caller),
        injected=served.credentials(rule, method),
    )
    charge = Charge(amount=0)
    if rule.price is not None:
        charge = await hold_charge(request, caller, session, rule.price, TRANSACTION_TYPE)
        # Committed before the upstream is called: no transaction stays open on the network.
        await session.commit()
    return await served.upstream.forward(
        request,
        outgoing,
        settle=settle_charge(charge, rule.charge),
        promises_json=served.promises_json,
        location=served.location,
    )
