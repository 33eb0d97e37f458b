"""Billing's Stripe errors, each one stable `error` code in the envelope."""

from __future__ import annotations

from tollhouse.kit.errors import BadRequest, ServiceUnavailable, TollhouseError


class StripeFailure(TollhouseError):
    """Stripe refused or could not be reached; the message is Stripe's own."""

    status_code = 502
    code = "stripe_error"
    message = "Stripe could not complete the request."


class StripeNotConfigured(ServiceUnavailable):
    code = "stripe_not_configured"
    message = "Stripe is not configured for this mode (STRIPE_SECRET_KEY_TEST / _LIVE)."


class WebhookNotConfigured(ServiceUnavailable):
    code = "webhook_not_configured"
    message = "No Stripe webhook secret is configured (STRIPE_WEBHOOK_SECRET_TEST / _LIVE)."


class InvalidSignature(BadRequest):
    code = "invalid_signature"
    message = "The Stripe-Signature header is missing or does not match the payload."


class StripeNotConnected(BadRequest):
    code = "stripe_not_connected"
    message = "This platform has not connected a Stripe account for this mode."


class ConnectNotConfigured(ServiceUnavailable):
    code = "stripe_connect_not_configured"
    message = "Stripe Connect is not configured for this mode (STRIPE_CONNECT_CLIENT_ID_…)."


class InvalidOAuthState(BadRequest):
    code = "invalid_oauth_state"
    message = "The Connect state is unknown, used or expired: start the connection again."


class OAuthDenied(BadRequest):
    code = "stripe_connect_denied"
    message = "Stripe did not grant the connection."


class PriceMismatch(BadRequest):
    code = "price_mismatch"
    message = "priceId is not the current price of this tier."


class TierNotPurchasable(BadRequest):
    code = "tier_not_purchasable"
    message = "This tier has no price to pay."


class UnknownTier(BadRequest):
    code = "unknown_tier"
    message = "The project has no subscription tier of that name."


class UrlNotAllowed(BadRequest):
    code = "url_not_allowed"
    message = "Redirect URLs must be https (or http://localhost)."


class NoBillingAccount(BadRequest):
    code = "no_billing_account"
    message = "This user has no Stripe customer yet (no subscription was ever bought)."
