"""External identity providers (Apple, Google, Auth0, Clerk, …), verified against their JWKS.

A token is routed to an issuer by its unverified `iss`; from then on only that issuer's
keys and asymmetric algorithms are accepted, so a token cannot choose how it is checked
(no `alg: none`, no HS256 signed with a public key).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import anyio
import jwt

from tollhouse.config import IssuerConfig
from tollhouse.identity.errors import InvalidToken, IssuerUnavailable, TokenExpired, token_defect


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    issuer: IssuerConfig
    external_id: str
    email: str | None
    display_name: str | None
    claims: dict[str, Any]


class IssuerRegistry:
    def __init__(
        self,
        issuers: list[IssuerConfig],
        *,
        cache_seconds: int,
        refetch_cooldown_seconds: float,
        timeout_seconds: float,
    ) -> None:
        self._by_name: dict[str, IssuerConfig] = {}
        for issuer in issuers:
            for name in (issuer.issuer, *issuer.aliases):
                self._by_name[name] = issuer
        # One key cache per JWKS URL; PyJWKClient refetches on an unknown kid at most once
        # per cooldown, which is our rate limit against kid-spraying.
        self._clients = {
            issuer.jwks_url: jwt.PyJWKClient(
                issuer.jwks_url,
                cache_keys=False,
                cache_jwk_set=True,
                lifespan=max(cache_seconds, 1),
                timeout=timeout_seconds,
                cooldown_duration=refetch_cooldown_seconds,
            )
            for issuer in issuers
        }

    def find(self, token: str) -> IssuerConfig | None:
        """The configured issuer a token claims to come from, if any (a peek, not a check)."""
        if not self._by_name:
            return None
        issuer = peek(token, 1).get("iss")
        return self._by_name.get(issuer) if isinstance(issuer, str) else None

    def get(self, name: str) -> IssuerConfig | None:
        return self._by_name.get(name)

    async def verify(self, token: str, issuer: IssuerConfig) -> ExternalIdentity:
        header = peek(token, 0)
        algorithm = header.get("alg")
        if algorithm not in issuer.algorithms:
            raise InvalidToken(
                f"Invalid access token: algorithm {algorithm!r} is not accepted "
                f"for issuer {issuer.issuer}"
            )
        client = self._clients[issuer.jwks_url]
        try:
            signing_key = _cached_signing_key(client, header.get("kid"))
            if signing_key is None:
                # PyJWKClient fetches with blocking urllib: only ever in a worker thread.
                signing_key = await anyio.to_thread.run_sync(client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailable() from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise InvalidToken(f"Invalid access token: {token_defect(exc)}") from exc
        if not algorithm_fits_key(algorithm, signing_key):
            raise InvalidToken(
                f"Invalid access token: algorithm {algorithm!r} does not fit its key"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=[algorithm],
                audience=issuer.audience,
                issuer=[issuer.issuer, *issuer.aliases],
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired() from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"Invalid access token: {token_defect(exc)}") from exc
        subject = claims.get(issuer.external_id_claim)
        if not isinstance(subject, str | int) or str(subject) == "":
            raise InvalidToken(
                f"Invalid access token: claim {issuer.external_id_claim!r} is missing"
            )
        return ExternalIdentity(
            issuer=issuer,
            external_id=f"{issuer.external_id_prefix}{subject}",
            email=_verified_email(claims),
            display_name=_display_name(claims),
            claims=claims,
        )


def peek(token: str, part: int) -> dict[str, Any]:
    """One unverified JWT segment (0 = header, 1 = claims), or {} if it is not JSON.

    Only ever used to choose how to verify; PyJWT's decode then checks everything again.
    Parsed by hand because it runs on every bearer request and PyJWT's parse costs 6x more.
    """
    segments = token.split(".")
    if len(segments) != 3:
        return {}
    try:
        segment = segments[part]
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def algorithm_fits_key(algorithm: Any, key: jwt.PyJWK) -> bool:
    """Whether a token's `alg` is one its key can check: RS256 named for an EC key's `kid` is
    a forgery to refuse, not a question for the key parser (which fails with a TypeError)."""
    if key.key_type == "RSA":
        return isinstance(algorithm, str) and algorithm[:2] in ("RS", "PS")
    return bool(algorithm == key.algorithm_name)


def _cached_signing_key(client: jwt.PyJWKClient, kid: Any) -> jwt.PyJWK | None:
    """The key for `kid` from a still-fresh cached key set, without touching the network."""
    cache = client.jwk_set_cache
    key_set = cache.get() if cache is not None else None
    if key_set is None or not isinstance(kid, str):
        return None
    for key in key_set.keys:
        if key.key_id == kid and key.public_key_use in ("sig", None):
            return key
    return None


def _verified_email(claims: dict[str, Any]) -> str | None:
    email = claims.get("email")
    # Apple sends "true" as a string; a provider that says nothing is not trusted.
    verified = claims.get("email_verified") in (True, "true")
    return email if isinstance(email, str) and verified else None


def _display_name(claims: dict[str, Any]) -> str | None:
    name = claims.get("name")
    return name[:200] if isinstance(name, str) else None
