"""Stripe: the port (client.py), Connect, checkout, the portal, webhooks, subscriptions.

Other billing code calls `StripeGateway` (`StripeDep` in routes, `app.state.stripe`).
"""

from tollhouse.billing.stripe.client import CheckoutSession, StripeDep, StripeGateway

__all__ = ["CheckoutSession", "StripeDep", "StripeGateway"]
