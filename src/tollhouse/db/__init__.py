"""Database access: engine, sessions, declarative base and migrations."""
