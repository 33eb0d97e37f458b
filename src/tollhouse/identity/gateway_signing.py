"""HMAC-signed gateway requests (flash-contract §2.3).

Signing input: "v1", METHOD, path (no query), X-User-Id ("" for system calls), timestamp as
sent — joined by newlines; HMAC-SHA256 under GATEWAY_SIGNING_SECRET; header `v1=<hex>`.
"""

from __future__ import annotations

from tollhouse.identity.errors import InvalidGatewaySignature
from tollhouse.kit.crypto import hmac_sha256_hex, secrets_equal

VERSION = "v1"


def signing_input(method: str, path: str, user_id: str, timestamp: str) -> str:
    return "\n".join((VERSION, method.upper(), path, user_id, timestamp))


def sign(secret: str, method: str, path: str, user_id: str, timestamp: str) -> str:
    return f"{VERSION}=" + hmac_sha256_hex(secret, signing_input(method, path, user_id, timestamp))


def verify(
    *,
    secret: str,
    signature: str,
    timestamp: str,
    method: str,
    path: str,
    user_id: str,
    now: float,
    tolerance_seconds: int,
) -> None:
    prefix = f"{VERSION}="
    if not signature.startswith(prefix) or len(signature) == len(prefix):
        raise InvalidGatewaySignature("Invalid gateway signature: expected 'v1=<hex digest>'.")
    try:
        sent_at = int(timestamp)
    except ValueError as exc:
        raise InvalidGatewaySignature(
            "Invalid gateway signature: timestamp is not an integer."
        ) from exc
    if abs(now - sent_at) > tolerance_seconds:
        raise InvalidGatewaySignature(
            f"Invalid gateway signature: timestamp is more than {tolerance_seconds} s off."
        )
    expected = sign(secret, method, path, user_id, timestamp)
    if not secrets_equal(signature, expected):
        raise InvalidGatewaySignature()
