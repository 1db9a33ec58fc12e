"""Trigram indexes for the admin API's text search (PostgreSQL only).

`q` searches input and output text with ILIKE '%...%', which no btree index serves;
pg_trgm's GIN indexes do. Creating the extension needs the CREATE privilege on the
database (pg_trgm is a trusted extension); where it is missing, search still works,
by scanning, and this migration says so once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import logging

from alembic import op
from sqlalchemy import exc, text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEXES = [
    ("ix_dify_logs_input_trgm", "input_text"),
    ("ix_dify_logs_output_trgm", "output_text"),
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except exc.DBAPIError:
        logging.getLogger("chatspan").warning(
            "chatspan: pg_trgm is not available here, so text search (q) scans instead of "
            "using an index; a superuser can run CREATE EXTENSION pg_trgm, then chatspan db upgrade"
        )
        return
    for name, column in _INDEXES:
        op.create_index(
            name,
            "dify_logs",
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _column in _INDEXES:
            op.drop_index(name, table_name="dify_logs", if_exists=True)
