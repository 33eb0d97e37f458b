"""POST /webhook/apple: App Store Server Notifications V2."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tollhouse.billing.apple import notifications
from tollhouse.billing.gateway.routes import BillingDep
from tollhouse.billing.gateway.schemas import AppleNotificationRequest
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import identity_context

webhook = APIRouter(tags=["webhooks"])


@webhook.post("/webhook/apple")
async def apple_notification(
    body: AppleNotificationRequest, request: Request, session: SessionDep, billing: BillingDep
) -> dict[str, Any]:
    """Verified with Apple's chain (no other credential); each notificationUUID acts once."""
    notification = await notifications.decode(billing.apple_verifier(), body.signedPayload)
    home = identity_context(request).home_project_id
    return await notifications.handle(
        session, home, billing.catalogue, notification, billing.credits
    )
