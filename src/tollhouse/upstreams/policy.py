"""Route policies: method + path pattern → who may call, its price and its charge rule.

An upstream serves only what its policy lists; the first rule whose methods and pattern match
the (normalised, see kit/proxy_paths.py) path decides. A call no rule lists, or one whose rule
says `none`, answers 404 without reaching the upstream. A rule listing GET takes HEAD too.
Pure data: no HTTP and no database here; `relay.py` applies it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tollhouse.config import UpstreamRouteRule
from tollhouse.kit.errors import NotFound
from tollhouse.kit.proxy_paths import InvalidPath, ProxyPath, segments_of
from tollhouse.upstreams.charge_rule import ChargeRule

METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})


class Access(StrEnum):
    ANYONE = "anyone"  # anonymous callers too
    USER = "user"  # any authenticated Gateway caller (users, services, the admin)
    ADMIN = "admin"  # the operator's X-Admin-Key
    NONE = "none"  # no one: 404, as if unlisted


class RouteNotListed(NotFound):
    code = "upstream_route_not_found"
    message = "This upstream does not serve this method and path."


class PolicyError(ValueError):
    """A route policy in the configuration that cannot be used (names the upstream)."""


@dataclass(frozen=True, slots=True)
class RouteRule:
    methods: frozenset[str]
    pattern: tuple[str, ...]
    access: Access
    price: str | int | None
    charge: ChargeRule
    credentials: bool

    def matches(self, method: str, path: ProxyPath) -> bool:
        if method not in self.methods:
            return False
        pattern, segments = self.pattern, path.segments
        if pattern and pattern[-1] == "**":
            pattern = pattern[:-1]
            if len(segments) < len(pattern):
                return False
            segments = segments[: len(pattern)]
        elif len(segments) != len(pattern):
            return False
        return all(p in ("*", s) for p, s in zip(pattern, segments, strict=True))


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    rules: tuple[RouteRule, ...]

    def decide(self, method: str, path: ProxyPath) -> RouteRule:
        """The rule for this call; RouteNotListed (404) when none lists it or it says none."""
        for rule in self.rules:
            if rule.matches(method, path):
                if rule.access is Access.NONE:
                    break
                return rule
        raise RouteNotListed()

    @classmethod
    def compile(
        cls, name: str, rules: Sequence[UpstreamRouteRule], known_costs: Collection[str]
    ) -> RoutePolicy:
        """The policy of upstream `name`; PolicyError naming what is wrong."""
        return cls(tuple(_rule(name, rule, known_costs) for rule in rules))


def _rule(name: str, rule: UpstreamRouteRule, known_costs: Collection[str]) -> RouteRule:
    where = f"{name}: {' '.join(rule.methods)} {rule.path!r}"
    unknown = sorted(set(rule.methods) - METHODS)
    if unknown:
        raise PolicyError(f"{where}: unknown methods {', '.join(unknown)}")
    try:
        pattern = segments_of(rule.path)
    except InvalidPath:
        raise PolicyError(f"{where}: not a clean path pattern") from None
    if "**" in pattern[:-1]:
        raise PolicyError(f"{where}: '**' may only end a pattern")
    if isinstance(rule.price, str) and rule.price not in known_costs:
        raise PolicyError(f"{where}: unknown cost key {rule.price!r}")
    if isinstance(rule.price, int) and rule.price < 0:
        raise PolicyError(f"{where}: a price cannot be negative")
    try:
        charge = ChargeRule.parse(rule.charge_on)
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    methods = set(rule.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return RouteRule(
        frozenset(methods), pattern, Access(rule.access), rule.price, charge, rule.credentials
    )
