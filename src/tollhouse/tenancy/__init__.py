"""Platforms and their projects (one per name and mode); the operator's home project."""
