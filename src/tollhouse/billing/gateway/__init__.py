"""Gateway API billing for the home project: the catalogue, status, Apple verification."""
