"""Alembic environment: the URL comes from the caller (``app.db.migrate``) or the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from app.settings import get_settings

config = context.config
url = config.attributes.get("url") or get_settings().db.database_url

connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
