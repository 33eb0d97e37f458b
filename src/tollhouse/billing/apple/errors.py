"""Apple's refusals: what a client can fix (400/409) and what Apple should retry (503)."""

from __future__ import annotations

from tollhouse.kit.errors import BadRequest, Conflict, ServiceUnavailable


class AppleNotConfigured(ServiceUnavailable):
    code = "apple_not_configured"
    message = (
        "Apple in-app purchases are not configured: set APPLE_BUNDLE_ID and "
        "APPLE_ROOT_CERTIFICATES (and APPLE_APP_ID in Production)."
    )


class AppleSignatureInvalid(BadRequest):
    code = "apple_signature_invalid"
    message = "The signed data is not a valid App Store signature (JWS, chain or signature)."


class AppleWrongApp(BadRequest):
    code = "apple_wrong_bundle_id"
    message = "The signed data belongs to another app (bundle id or app Apple id)."


class AppleWrongEnvironment(BadRequest):
    code = "apple_wrong_environment"
    message = "The signed data comes from another App Store environment (Sandbox or Production)."


class AppleVerificationUnavailable(ServiceUnavailable):
    code = "apple_verification_unavailable"
    message = "The certificate status could not be checked right now; try again."


class AppleTransactionInvalid(BadRequest):
    code = "apple_transaction_invalid"
    message = "The transaction is missing a field it needs."


class UnknownProduct(BadRequest):
    code = "unknown_product"
    message = "This product is not in our catalogue."


class TransactionRevoked(BadRequest):
    code = "transaction_revoked"
    message = "Apple has revoked (refunded) this transaction."


class TransactionAlreadyClaimed(Conflict):
    code = "transaction_already_claimed"
    message = "This transaction was already used by another account."
