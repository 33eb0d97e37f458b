"""Usage quotas per tier and period, and rate limits."""
