"""Selling: Stripe (checkout, cart, portal, webhooks, Connect) and Apple in-app purchases."""
