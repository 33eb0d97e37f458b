"""Hashing and comparison helpers for secrets: keyed hashes at rest, constant-time checks."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def keyed_hash(pepper: str, value: str) -> str:
    """HMAC-SHA256 of a secret under the server pepper: what we store instead of the secret."""
    return hmac.new(pepper.encode(), value.encode(), hashlib.sha256).hexdigest()


def hmac_sha256_hex(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def secrets_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def random_token(nbytes: int = 48) -> str:
    return secrets.token_urlsafe(nbytes)
