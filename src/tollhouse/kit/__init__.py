"""Small shared pieces every domain may use; imports no domain."""
