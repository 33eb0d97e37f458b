"""Development-only pages (never served in production)."""
