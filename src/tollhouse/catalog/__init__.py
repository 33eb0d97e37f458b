"""Tiers (subscription plans with usage limits) and one-off products with inventory."""
