"""Our own tokens: HS256 access tokens and opaque refresh tokens (kept only as hashes)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from tollhouse.identity.errors import InvalidToken, TokenExpired, WrongTokenType, token_defect
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import keyed_hash, random_token

ACCESS_ALGORITHM = "HS256"
# Our access tokens name us; a token of another issuer is never taken for one of ours.
ACCESS_ISSUER = "tollhouse"


class _PreparedOnceHMAC(HMACAlgorithm):
    """HS256 that vets each secret once, not once per token.

    PyJWT's key check tries to parse the secret as PEM, SSH, DER and JSON keys (about 80 µs);
    our secret never changes, so the verdict is kept.
    """

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one instance for the process lifetime
    def prepare_key(self, key: str | bytes) -> bytes:
        return super().prepare_key(key)


_codec = jwt.PyJWT()
_codec._jws.unregister_algorithm(ACCESS_ALGORITHM)
_codec._jws.register_algorithm(ACCESS_ALGORITHM, _PreparedOnceHMAC(HMACAlgorithm.SHA256))


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int


def issue_access_token(secret: str, user_id: uuid.UUID, minutes: int) -> AccessToken:
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=minutes)).timestamp()),
        "type": "access",
        # Unique per token, so two pairs issued in the same second still differ.
        "jti": uuid.uuid4().hex,
        "iss": ACCESS_ISSUER,
    }
    token = _codec.encode(
        claims, secret, algorithm=ACCESS_ALGORITHM, headers={"kid": access_key_id(secret)}
    )
    return AccessToken(token, minutes * 60)


@functools.lru_cache(maxsize=8)
def access_key_id(secret: str) -> str:
    """The `kid` of our signing secret: names it without revealing it (a keyed hash)."""
    return "hs-" + keyed_hash(secret, "access-token-key-id")[:16]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    expires_at: int


def verify_access_token(secret: str, token: str, now: float) -> AccessClaims:
    """Who an access token of ours names, until when; any defect is a 401 saying which.
    `now` (epoch seconds) decides expiry: the caller's clock, which tests move by hand."""
    try:
        decoded = _codec.decode_complete(
            token,
            secret,
            algorithms=[ACCESS_ALGORITHM],
            issuer=ACCESS_ISSUER,
            # PyJWT reads the wall clock itself; expiry is checked below against `now`.
            options={"require": ["sub", "exp", "iat", "iss"], "verify_exp": False},
        )
        expires_at = decoded["payload"]["exp"]
        if not isinstance(expires_at, int) or isinstance(expires_at, bool):
            raise jwt.DecodeError("Expiration Time claim (exp) must be an integer.")
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"Invalid access token: {token_defect(exc)}") from exc
    if expires_at <= now:
        raise TokenExpired()
    kid = decoded["header"].get("kid")
    if kid is not None and kid != access_key_id(secret):
        raise InvalidToken("Invalid access token: unknown key id")
    claims: dict[str, Any] = decoded["payload"]
    if claims.get("type") != "access":
        raise WrongTokenType()
    try:
        return AccessClaims(uuid.UUID(str(claims["sub"])), expires_at)
    except ValueError as exc:
        raise InvalidToken("Invalid access token: subject is not a user id") from exc


@dataclass(frozen=True, slots=True)
class NewRefreshToken:
    token: str
    token_hash: str
    expires_at: datetime


def new_refresh_token(pepper: str, days: int) -> NewRefreshToken:
    token = random_token(48)
    return NewRefreshToken(
        token, hash_refresh_token(pepper, token), utcnow() + timedelta(days=days)
    )


def hash_refresh_token(pepper: str, token: str) -> str:
    return keyed_hash(pepper, token)
