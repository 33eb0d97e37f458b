"""Webhook signatures: Stripe's own check (`stripe.WebhookSignature.verify_header`), with
the test secret, then the live one. Nothing is parsed before a signature matches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import stripe

from tollhouse.billing.stripe.client import MODES, Mode
from tollhouse.billing.stripe.errors import InvalidSignature, WebhookNotConfigured
from tollhouse.config import Settings


@dataclass(frozen=True)
class VerifiedEvent:
    """A webhook event whose signature checked out, and the mode whose secret matched."""

    mode: Mode
    event: dict[str, Any]


def verify_event(settings: Settings, payload: bytes, signature: str | None) -> VerifiedEvent:
    """503 without any secret; 400 `invalid_signature` for a missing, bad or stale one."""
    secrets = [
        (mode, secret)
        for mode in MODES
        if (secret := settings.secret(f"stripe_webhook_secret_{mode}"))
    ]
    if not secrets:
        raise WebhookNotConfigured()
    if not signature:
        raise InvalidSignature()
    for mode, secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"),
                signature,
                secret,
                settings.stripe_webhook_tolerance_seconds,
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            continue
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise InvalidSignature("The webhook payload is not JSON.") from exc
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise InvalidSignature("The webhook payload is not a Stripe event.")
        return VerifiedEvent(mode=mode, event=event)
    raise InvalidSignature()
