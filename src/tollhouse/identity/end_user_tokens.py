"""Tokens for the end users of platform projects: ours (ES256) and the project's own IdP's.

Ours are minted by `POST /api/customers/{id}/token` and carry `sub`, `plan` and
`publishableKey`; the public key is at `/.well-known/jwks.json`. The signing key is derived
from the server pepper (HKDF), so every replica signs with the same key without another
secret to distribute, and rotating the pepper rotates it.

A project may also bring its own identity provider (issuer + JWKS URL + audience); Clerk-style
claims (`publicMetadata.plan`, `publicMetadata.publishableKey`) are read as well as top-level
`plan` / `publishableKey`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import anyio
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tollhouse.identity.errors import InvalidToken, IssuerUnavailable, TokenExpired, token_defect
from tollhouse.identity.issuers import algorithm_fits_key, peek
from tollhouse.kit.ttl_cache import TTLCache

ISSUER = "tollhouse:end-user"
ALGORITHM = "ES256"
LEEWAY_SECONDS = 60
# What a project's own IdP may sign with (asymmetric only: a JWKS holds public keys).
PROJECT_ISSUER_ALGORITHMS = ("RS256", "ES256")
# P-256's group order: a derived scalar must lie in [1, n-1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True, slots=True)
class EndUserClaims:
    # The project the token was issued for, when the issuer says (ours: `aud`).
    project_id: str | None
    subject: str
    plan: str | None
    publishable_key: str | None
    email: str | None
    expires_at: int


class EndUserSigner:
    """Our end-user signing key, derived once per process from the pepper."""

    def __init__(self, pepper: str) -> None:
        material = HKDF(
            algorithm=hashes.SHA256(), length=48, salt=None, info=b"tollhouse end-user tokens"
        ).derive(pepper.encode())
        scalar = int.from_bytes(material, "big") % (_P256_ORDER - 1) + 1
        self._private = ec.derive_private_key(scalar, ec.SECP256R1())
        self.public_key = self._private.public_key()
        self.jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.public_key))
        self.kid = _thumbprint(self.jwk)
        self.jwk.update({"kid": self.kid, "use": "sig", "alg": ALGORITHM})

    def mint(
        self,
        *,
        project_id: str,
        subject: str,
        plan: str,
        publishable_key: str,
        email: str | None,
        ttl_seconds: int,
    ) -> tuple[str, int]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": project_id,
            "sub": subject,
            "plan": plan,
            "publishableKey": publishable_key,
            "iat": now,
            "exp": now + ttl_seconds,
        }
        if email:
            claims["email"] = email
        token = jwt.encode(claims, self._private, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, now + ttl_seconds

    def owns(self, token: str) -> bool:
        return peek(token, 0).get("kid") == self.kid

    def verify(self, token: str) -> EndUserClaims:
        """Our signature and expiry; the caller checks the project (`aud`) against the key."""
        claims = _decode(token, self.public_key, [ALGORITHM], audience=None, issuer=ISSUER)
        audience = claims.get("aud")
        if not isinstance(audience, str):
            raise InvalidEndUserToken("Invalid end-user token: claim 'aud' is missing.")
        return _claims_of(claims, project_id=audience)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}


@dataclass(frozen=True, slots=True)
class ProjectIssuer:
    issuer: str
    jwks_url: str
    audience: str | None


class ProjectIssuers:
    """JWKS clients for projects' own identity providers, one per URL, bounded."""

    def __init__(self, *, cache_seconds: int, timeout_seconds: float, cooldown: float) -> None:
        self._clients: TTLCache[str, jwt.PyJWKClient] = TTLCache(max_entries=1_000)
        self._cache_seconds = max(cache_seconds, 1)
        self._timeout = timeout_seconds
        self._cooldown = cooldown

    def _client(self, url: str) -> jwt.PyJWKClient:
        client = self._clients.get(url)
        if client is None:
            client = jwt.PyJWKClient(
                url,
                cache_keys=False,
                cache_jwk_set=True,
                lifespan=self._cache_seconds,
                timeout=self._timeout,
                cooldown_duration=self._cooldown,
            )
            self._clients.put(url, client, 24 * 3600)
        return client

    async def verify(self, token: str, issuer: ProjectIssuer) -> EndUserClaims:
        client = self._client(issuer.jwks_url)
        try:
            # PyJWKClient fetches with blocking urllib: only ever in a worker thread.
            signing_key = await anyio.to_thread.run_sync(client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailable() from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise InvalidEndUserToken(f"Invalid end-user token: {token_defect(exc)}") from exc
        algorithm = peek(token, 0).get("alg")
        if algorithm not in PROJECT_ISSUER_ALGORITHMS or not algorithm_fits_key(
            algorithm, signing_key
        ):
            raise InvalidEndUserToken(
                f"Invalid end-user token: algorithm {algorithm!r} is not accepted for its key"
            )
        claims = _decode(
            token,
            signing_key.key,
            [algorithm],
            audience=issuer.audience,
            issuer=issuer.issuer,
        )
        return _claims_of(claims, project_id=None)


class InvalidEndUserToken(InvalidToken):
    code = "invalid_end_user_token"
    message = "Invalid or missing end-user token."


def _decode(
    token: str, key: Any, algorithms: list[str], *, audience: str | None, issuer: str
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "sub"], "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("End-user token expired.") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidEndUserToken(f"Invalid end-user token: {token_defect(exc)}") from exc
    return claims


def _claims_of(claims: dict[str, Any], *, project_id: str | None) -> EndUserClaims:
    metadata = claims.get("publicMetadata")
    metadata = metadata if isinstance(metadata, dict) else {}

    def text(name: str) -> str | None:
        value = metadata.get(name, claims.get(name))
        return value if isinstance(value, str) and value else None

    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise InvalidEndUserToken("Invalid end-user token: claim 'sub' is missing or too long.")
    email = claims.get("email") or claims.get("primary_email") or metadata.get("email")
    return EndUserClaims(
        project_id=project_id,
        subject=subject,
        plan=text("plan"),
        publishable_key=text("publishableKey"),
        email=email if isinstance(email, str) else None,
        expires_at=int(claims["exp"]),
    )


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC key: a stable kid."""
    canonical = json.dumps(
        {name: jwk[name] for name in ("crv", "kty", "x", "y")}, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
