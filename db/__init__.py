"""Persistence: typed SQLAlchemy models, sessions from a URL, Alembic migrations, query helpers."""
