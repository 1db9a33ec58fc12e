"""Alembic environment: run by chatspan.store.migrate with an open connection."""

from alembic import context
from sqlalchemy import text

from chatspan.store.migrate import MIGRATION_LOCK_ID, VERSION_TABLE
from chatspan.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Several workers may start at once: one migrates, the others wait and find it done.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    context.run_migrations()
