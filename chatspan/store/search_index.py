"""Optional trigram indexes for the admin API's text search, on PostgreSQL.

`q` searches question and answer text with ILIKE '%...%', which no btree index serves:
without these indexes a search scans the table (fine for thousands of chats, slow for
millions). pg_trgm's GIN indexes make it fast, but they cost writes dearly (every
answer is split into hundreds of trigrams): on the benchmark machine the exporter
stored about 6 times fewer rows per second with them. So they are a choice an
operator makes with `chatspan db search-index create`, not part of the schema.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from chatspan.store.engine import require_postgres

INDEXES = {
    "ix_dify_logs_input_trgm": "input_text",
    "ix_dify_logs_output_trgm": "output_text",
}


def create(engine: Engine) -> None:
    """Create pg_trgm and the indexes, without blocking writers (CONCURRENTLY)."""
    require_postgres(engine, "the text search indexes")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        for name, column in INDEXES.items():
            connection.execute(
                text(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} "
                    f"ON dify_logs USING gin ({column} gin_trgm_ops)"
                )
            )


def drop(engine: Engine) -> None:
    require_postgres(engine, "the text search indexes")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for name in INDEXES:
            connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
