"""LLM access for scene generation: the interface (`base`), providers, and the router that
retries, falls back between providers and keeps the accounting."""
