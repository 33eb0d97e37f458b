"""Platform API key strings: `pk_test_…`, `pk_live_…`, `sk_test_…`, `sk_live_…`.

    sk_live_ + 40 random base62 characters (~238 bits) + 6 characters of checksum

The checksum (CRC32 of everything before it, in base62) lets a secret scanner, or our own
resolver, tell a real key from a typo or a look-alike without a database lookup.
"""

from __future__ import annotations

import secrets
import string
import zlib
from typing import Literal

KeyKind = Literal["publishable", "secret"]
Mode = Literal["test", "live"]

_BASE62 = string.digits + string.ascii_letters
_RANDOM_LENGTH = 40
_CHECKSUM_LENGTH = 6
_KIND_PREFIX = {"publishable": "pk", "secret": "sk"}
_PREFIX_KIND = {"pk": "publishable", "sk": "secret"}


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH)


def new_key(kind: KeyKind, mode: Mode) -> str:
    body = f"{_KIND_PREFIX[kind]}_{mode}_" + "".join(
        secrets.choice(_BASE62) for _ in range(_RANDOM_LENGTH)
    )
    return body + _checksum(body)


def parse(key: str) -> tuple[KeyKind, Mode] | None:
    """(kind, mode) of a well-formed key with a valid checksum, else None."""
    prefix, _, rest = key.partition("_")
    mode, _, tail = rest.partition("_")
    if prefix not in _PREFIX_KIND or mode not in ("test", "live"):
        return None
    if len(tail) != _RANDOM_LENGTH + _CHECKSUM_LENGTH or not all(c in _BASE62 for c in tail):
        return None
    body = key[:-_CHECKSUM_LENGTH]
    if not secrets.compare_digest(_checksum(body), key[-_CHECKSUM_LENGTH:]):
        return None
    kind: KeyKind = "publishable" if prefix == "pk" else "secret"
    checked_mode: Mode = "test" if mode == "test" else "live"
    return kind, checked_mode


def display(key: str, kind: KeyKind) -> str:
    """What we show after creation: publishable keys in full, secrets as `sk_live_ab…wxyz`."""
    if kind == "publishable":
        return key
    prefix_length = len("sk_live_")
    return f"{key[: prefix_length + 2]}…{key[-4:]}"
