"""Stripe's wire format: form-encoded bodies in, signed webhook payloads out."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse

_KEY_PART = re.compile(r"\[([^\]]*)\]")


def parse_form(body: str) -> dict[str, Any]:
    """`a[b][0][c]=v` → {"a": {"b": [{"c": "v"}]}} (Stripe's encoding, as the SDK sends it)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    parsed: dict[str, Any] = _listify(root)
    return parsed


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def error(status: int, message: str, type_: str = "invalid_request_error") -> JSONResponse:
    """Stripe's error body, which the SDK turns into its typed exceptions."""
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status)


def sign(event: dict[str, Any], secret: str, *, at: int | None = None) -> tuple[bytes, str]:
    """Stripe's scheme: `t=<ts>,v1=HMAC-SHA256(secret, f"{t}.{payload}")` — what
    `stripe.Webhook.construct_event` verifies."""
    payload = json.dumps(event).encode()
    t = at if at is not None else int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={t},v1={mac}"
