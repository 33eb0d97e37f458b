"""App Store Server Notifications V2: renewals grant, refunds take back, each one once.

Everything signed is verified before the database is touched (the notification, then the
transaction inside it). The notification is then recorded in the inbox under its
`notificationUUID`: a redelivery finds the row and has no effect. Outcomes Apple cannot fix
by retrying (an unknown product, a subscription nobody has claimed yet) are recorded and
answered 200; only verification problems are refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from appstoreserverlibrary.models.JWSTransactionDecodedPayload import JWSTransactionDecodedPayload
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.apple import purchases
from tollhouse.billing.apple.errors import AppleSignatureInvalid
from tollhouse.billing.apple.models import AppleTransaction
from tollhouse.billing.apple.purchases import INBOX_SOURCE, ApplePurchase
from tollhouse.billing.apple.verifier import AppleVerifier
from tollhouse.billing.credits import IN_PROCESS, Credits
from tollhouse.billing.gateway.products import Catalogue
from tollhouse.billing.gateway.refunds import granted_for
from tollhouse.billing.inbox import first_delivery
from tollhouse.identity import service as identity
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import TollhouseError

INBOX_SOURCE_NOTIFICATIONS = "apple"
GRANTING = frozenset({"SUBSCRIBED", "DID_RENEW", "ONE_TIME_CHARGE", "OFFER_REDEEMED"})
TAKING_BACK = frozenset({"REFUND", "REVOKE"})
GRANT_TYPES = ("apple_iap", "subscription_grant")


@dataclass(frozen=True, slots=True)
class Notification:
    uuid: str
    type: str
    subtype: str | None
    transaction: JWSTransactionDecodedPayload | None


async def decode(verifier: AppleVerifier, signed_payload: str) -> Notification:
    """Verify the notification and the transaction it carries (worker threads, no database)."""
    decoded = await verifier.notification(signed_payload)
    if not decoded.notificationUUID or not decoded.rawNotificationType:
        raise AppleSignatureInvalid("The notification has no notificationUUID or type.")
    signed_transaction = decoded.data.signedTransactionInfo if decoded.data else None
    transaction = await verifier.transaction(signed_transaction) if signed_transaction else None
    return Notification(
        uuid=decoded.notificationUUID[:255],
        type=decoded.rawNotificationType[:100],
        subtype=decoded.rawSubtype,
        transaction=transaction,
    )


async def handle(
    session: AsyncSession,
    project_id: str,
    catalogue: Catalogue,
    notification: Notification,
    credits: Credits = IN_PROCESS,
) -> dict[str, Any]:
    transaction_id = notification.transaction.transactionId if notification.transaction else None
    first = await first_delivery(
        session,
        INBOX_SOURCE_NOTIFICATIONS,
        notification.uuid,
        notification.type,
        project_id=project_id,
        summary={"subtype": notification.subtype, "transaction_id": transaction_id},
    )
    if not first:
        return {"received": True, "idempotent": True}
    transaction = notification.transaction
    outcome = "ignored"
    if transaction is not None and notification.type in GRANTING:
        outcome = await _grant(session, project_id, catalogue, transaction, credits)
    elif transaction is not None and notification.type in TAKING_BACK:
        outcome = await _take_back(session, project_id, transaction.transactionId, credits)
    return {"received": True, "outcome": outcome}


async def _grant(
    session: AsyncSession,
    project_id: str,
    catalogue: Catalogue,
    transaction: JWSTransactionDecodedPayload,
    credits: Credits,
) -> str:
    try:
        purchase = purchases.purchase_from(transaction, catalogue)
    except TollhouseError as exc:
        return exc.code
    user = await _owner(session, project_id, purchase)
    if user is None:
        # Nobody has claimed the subscription yet: the app's verify call will grant it.
        return "owner_unknown"
    try:
        claim = await purchases.claim(session, user, purchase, credits)
    except TollhouseError as exc:
        return exc.code
    return "already_granted" if claim.already_claimed else "granted"


async def _owner(session: AsyncSession, project_id: str, purchase: ApplePurchase) -> User | None:
    earlier = await purchases.owner_of_subscription(session, purchase.original_transaction_id)
    user_id = earlier.user_id if earlier is not None else _uuid(purchase.app_account_token)
    if user_id is None:
        return None
    try:
        return await identity.active_user_by_id(session, project_id, user_id)
    except TollhouseError:
        return None


def _uuid(value: str | None) -> uuid.UUID | None:
    # The app may set appAccountToken to our user id when it starts the purchase.
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


async def _take_back(
    session: AsyncSession, project_id: str, transaction_id: str | None, credits: Credits
) -> str:
    """Needs only the transaction id: what was granted is in our record and the ledger."""
    if transaction_id is None or not purchases.TRANSACTION_ID.match(transaction_id):
        return "apple_transaction_invalid"
    refunded = (
        await session.execute(
            update(AppleTransaction)
            .where(
                AppleTransaction.transaction_id == transaction_id,
                AppleTransaction.refunded_at.is_(None),
            )
            .values(refunded_at=utcnow())
            .returning(AppleTransaction.account_id)
        )
    ).one_or_none()
    if refunded is None:
        # Never claimed (or refunded already): make sure it can never be claimed now.
        await first_delivery(
            session,
            INBOX_SOURCE,
            transaction_id,
            "refunded",
            project_id=project_id,
            summary={"refunded_before_claim": True},
        )
        return "nothing_to_take_back"
    account_id = refunded.account_id
    granted = await granted_for(session, account_id, transaction_id, GRANT_TYPES)
    if granted == 0:
        return "nothing_to_take_back"
    result = await credits.take_back(
        session,
        account_id,
        granted,
        idempotency_key=f"apple-refund:{transaction_id}",
        reference_id=transaction_id,
        description=f"App Store refund of transaction {transaction_id}",
        reason=f"apple refund {transaction_id}",
    )
    return "taken_back" if result.unrecovered == 0 else "partially_taken_back"
