"""Claiming an App Store transaction: it grants its credits once, to the first user to claim it.

Three things make "once" hold under concurrent claims and redelivered notifications: the
inbox row `("apple_tx", transactionId)` inserted first (a concurrent claim waits on its unique
index, then finds it), the `apple_transactions` row naming the owner, and the ledger's
idempotency key `apple:{transactionId}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from appstoreserverlibrary.models.JWSTransactionDecodedPayload import JWSTransactionDecodedPayload
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.apple.errors import (
    AppleTransactionInvalid,
    TransactionAlreadyClaimed,
    TransactionRevoked,
    UnknownProduct,
)
from tollhouse.billing.apple.models import AppleTransaction
from tollhouse.billing.credits import IN_PROCESS, Credits
from tollhouse.billing.gateway.products import Catalogue, Product
from tollhouse.billing.inbox import first_delivery
from tollhouse.identity.models import User
from tollhouse.ledger import service as ledger
from tollhouse.ledger.models import CreditAccount

INBOX_SOURCE = "apple_tx"
TRANSACTION_ID = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
# Apple sells at most 10 of a consumable at once; more is not a real transaction.
MAX_QUANTITY = 10


@dataclass(frozen=True, slots=True)
class ApplePurchase:
    """The parts of a verified transaction we act on."""

    transaction_id: str
    original_transaction_id: str
    product: Product
    apple_product_id: str
    quantity: int
    purchased_at: datetime
    expires_at: datetime | None
    environment: str
    revoked: bool
    app_account_token: str | None

    @property
    def credits(self) -> int:
        """One grant: a pack times its quantity, or a subscription's first month."""
        if self.product.kind == "credit_pack":
            return self.product.credits * self.quantity
        return self.product.credits


@dataclass(frozen=True, slots=True)
class Claim:
    granted: int
    balance: int
    already_claimed: bool


def purchase_from(payload: JWSTransactionDecodedPayload, catalogue: Catalogue) -> ApplePurchase:
    transaction_id = _transaction_id(payload.transactionId, "transactionId")
    original = _transaction_id(
        payload.originalTransactionId or payload.transactionId, "originalTransactionId"
    )
    if not payload.productId:
        raise AppleTransactionInvalid(detail={"field": "productId"})
    product = catalogue.by_apple_id(payload.productId)
    if product is None:
        raise UnknownProduct(
            f"Product {payload.productId[:100]!r} is not in our catalogue.",
            detail={"product_id": payload.productId[:255]},
        )
    quantity = payload.quantity or 1
    if not 1 <= quantity <= MAX_QUANTITY:
        raise AppleTransactionInvalid(detail={"field": "quantity"})
    purchased = payload.purchaseDate or payload.signedDate
    if purchased is None:
        raise AppleTransactionInvalid(detail={"field": "purchaseDate"})
    return ApplePurchase(
        transaction_id=transaction_id,
        original_transaction_id=original,
        product=product,
        apple_product_id=payload.productId,
        quantity=quantity,
        purchased_at=from_millis(purchased),
        expires_at=from_millis(payload.expiresDate) if payload.expiresDate else None,
        environment=(payload.rawEnvironment or "")[:16],
        revoked=payload.revocationDate is not None,
        app_account_token=payload.appAccountToken,
    )


def _transaction_id(value: str | None, field: str) -> str:
    if value is None or not TRANSACTION_ID.match(value):
        raise AppleTransactionInvalid(detail={"field": field})
    return value


def from_millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def ledger_key(transaction_id: str) -> str:
    return f"apple:{transaction_id}"


async def claim(
    session: AsyncSession, user: User, purchase: ApplePurchase, credits: Credits = IN_PROCESS
) -> Claim:
    """Grant the purchase to `user` once; the same user claiming again gets nothing more.

    A repeated claim re-issues the grant under the same key (a no-op once it happened), so a
    grant lost after the claim was recorded (`HttpCredits` commits first) is made good."""
    if purchase.revoked:
        raise TransactionRevoked()
    account = await ledger.ensure_account(session, user)
    product = purchase.product
    first = await first_delivery(
        session,
        INBOX_SOURCE,
        purchase.transaction_id,
        product.kind,
        project_id=user.project_id,
        summary={"user_id": str(user.id), "product_id": product.id, "credits": purchase.credits},
    )
    if not first:
        owner = await session.scalar(
            select(AppleTransaction.user_id).where(
                AppleTransaction.transaction_id == purchase.transaction_id
            )
        )
        if owner is None:
            # Recorded without an owner: a refund notification arrived before any claim.
            raise TransactionRevoked()
        if owner != user.id:
            raise TransactionAlreadyClaimed()
        await _grant(session, credits, account, purchase)
        return Claim(0, await credits.balance(session, account), already_claimed=True)
    session.add(
        AppleTransaction(
            transaction_id=purchase.transaction_id,
            original_transaction_id=purchase.original_transaction_id,
            project_id=user.project_id,
            user_id=user.id,
            account_id=account.id,
            product_id=product.id,
            apple_product_id=purchase.apple_product_id,
            kind=product.kind,
            credits=purchase.credits,
            environment=purchase.environment,
            purchased_at=purchase.purchased_at,
            expires_at=purchase.expires_at,
            months_granted=1,
        )
    )
    await session.flush()
    balance = await _grant(session, credits, account, purchase)
    return Claim(purchase.credits, balance, already_claimed=False)


async def _grant(
    session: AsyncSession, credits: Credits, account: CreditAccount, purchase: ApplePurchase
) -> int:
    product = purchase.product
    what = f"{purchase.quantity} × {product.name}" if purchase.quantity > 1 else product.name
    return await credits.grant(
        session,
        account,
        purchase.credits,
        product.ledger_type,
        description=f"App Store: {what}",
        reference_id=purchase.transaction_id,
        idempotency_key=ledger_key(purchase.transaction_id),
    )


async def owner_of_subscription(
    session: AsyncSession, original_transaction_id: str
) -> AppleTransaction | None:
    """Any claimed transaction of the subscription: its owner owns the renewals too."""
    return await session.scalar(
        select(AppleTransaction)
        .where(AppleTransaction.original_transaction_id == original_transaction_id)
        .order_by(AppleTransaction.purchased_at)
        .limit(1)
    )
