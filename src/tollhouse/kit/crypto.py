"""Hashing and comparison helpers for secrets: keyed hashes at rest, constant-time checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def keyed_hash(pepper: str, value: str) -> str:
    """HMAC-SHA256 of a secret under the server pepper: what we store instead of the secret."""
    return hmac.new(pepper.encode(), value.encode(), hashlib.sha256).hexdigest()


def hmac_sha256_hex(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def secrets_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def random_token(nbytes: int = 48) -> str:
    return secrets.token_urlsafe(nbytes)


# --- encryption at rest (Stripe Connect tokens) -------------------------------------------

_ENCRYPTION_INFO = b"tollhouse/at-rest-encryption/v1"


def _fernet(pepper: str) -> Fernet:
    """A Fernet key derived from the pepper by HKDF-SHA256 (no second secret to manage)."""
    derived = HKDF(algorithm=SHA256(), length=32, salt=None, info=_ENCRYPTION_INFO).derive(
        pepper.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(pepper: str, text: str) -> str:
    """Authenticated encryption (AES-128-CBC + HMAC, Fernet) of `text` under the pepper."""
    return _fernet(pepper).encrypt(text.encode()).decode("ascii")


def decrypt(pepper: str, token: str) -> str:
    """The plaintext of `encrypt`; raises `cryptography.fernet.InvalidToken` if tampered."""
    return _fernet(pepper).decrypt(token.encode("ascii")).decode()
