"""Cookies for pages: HttpOnly always, SameSite=Lax, Secure outside development; and
signed, expiring values (HMAC-SHA256 under a key derived from the pepper) for state a page
keeps in the browser, so nothing in a cookie can be forged or outlive its `max_age`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Request, Response

from tollhouse.identity.caller import identity_context


def derived_key(request: Request, purpose: str) -> bytes:
    """A key for one purpose, derived from the pepper (no second secret to manage)."""
    pepper = identity_context(request).pepper
    return HKDF(
        algorithm=SHA256(), length=32, salt=None, info=f"tollhouse web/{purpose}".encode()
    ).derive(pepper.encode())


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    settings = identity_context(request).settings
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=settings.tollhouse_env != "development",
        path="/",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    settings = identity_context(request).settings
    response.delete_cookie(
        name,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.tollhouse_env != "development",
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SignedCookie:
    """A cookie whose value is `payload.signature`, with the expiry inside the payload."""

    name: str
    purpose: str
    max_age: int

    def _sign(self, request: Request, body: str) -> str:
        key = derived_key(request, self.purpose)
        return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())

    def write(self, request: Request, response: Response, payload: dict[str, Any]) -> None:
        body = _b64(json.dumps({**payload, "exp": int(time.time()) + self.max_age}).encode())
        set_cookie(
            request, response, self.name, f"{body}.{self._sign(request, body)}", self.max_age
        )

    def read(self, request: Request) -> dict[str, Any] | None:
        """The payload, or None when the cookie is missing, forged or expired."""
        raw = request.cookies.get(self.name, "")
        body, _, signature = raw.partition(".")
        if not body or len(raw) > 4096:
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(request, body).encode()):
            return None
        try:
            payload = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(payload, dict) or int(payload.get("exp", 0)) < time.time():
            return None
        return payload

    def clear(self, request: Request, response: Response) -> None:
        clear_cookie(request, response, self.name)
