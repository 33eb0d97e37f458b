"""Password hashing for every kind of account (developers, end users): argon2id.

argon2 is deliberately slow, so hashing and verifying run in a worker thread, and an
unknown account still pays for one verification (`dummy_hash`) so timing reveals nothing.
"""

from __future__ import annotations

import functools

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tollhouse.kit.errors import BadRequest

PASSWORD_MIN = 10
# Bounded so a megabyte "password" cannot buy a megabyte of hashing.
PASSWORD_MAX = 1024


class WeakPassword(BadRequest):
    code = "weak_password"
    message = f"A password needs between {PASSWORD_MIN} and {PASSWORD_MAX} characters."


_hasher = PasswordHasher()  # argon2id with the library's current parameters


def acceptable(password: str) -> bool:
    return PASSWORD_MIN <= len(password) <= PASSWORD_MAX


@functools.cache
def dummy_hash() -> str:
    return _hasher.hash("an unknown account still costs one verification")


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def password_matches(stored_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(verify)


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
