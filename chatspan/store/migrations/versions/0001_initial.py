"""dify_logs and error tables with the admin-query indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# A migration is a frozen record of history: it spells the schema of its day out rather
# than importing chatspan.store.tables, which later revisions will change.
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_TIMESTAMP = sa.DateTime(timezone=True)


def _common_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
    ]


def _context_columns() -> list[sa.Column]:
    return [
        sa.Column("route", sa.Text),
        sa.Column("service_name", sa.Text),
        sa.Column("attributes", _JSON),
    ]


def _indexes(table: str) -> list[tuple[str, list[str]]]:
    return [
        (f"ix_{table}_user_created", ["user_id", "created_at", "id"]),
        (f"ix_{table}_app_created", ["app_id", "created_at"]),
        (f"ix_{table}_conversation_created", ["conversation_id", "created_at"]),
        (f"ix_{table}_created", ["created_at", "id"]),
        (f"ix_{table}_trace", ["trace_id"]),
    ]


def upgrade() -> None:
    op.create_table(
        "dify_logs",
        *_common_columns(),
        sa.Column("app_id", sa.Text),
        sa.Column("conversation_id", sa.Text),
        sa.Column("message_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("input_text", sa.Text),
        sa.Column("output_text", sa.Text),
        sa.Column("latency_ms", sa.Double),
        sa.Column("time_to_first_token_ms", sa.Double),
        sa.Column("model", sa.Text),
        sa.Column("provider", sa.Text),
        sa.Column("input_tokens", sa.BigInteger),
        sa.Column("output_tokens", sa.BigInteger),
        sa.Column("total_tokens", sa.BigInteger),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_mode", sa.String(16)),
        *_context_columns(),
    )
    op.create_table(
        "error",
        *_common_columns(),
        sa.Column("type_error", sa.Text, nullable=False),
        sa.Column("error_message", sa.Text),
        sa.Column("stacktrace", sa.Text),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("user_id", sa.Text),
        sa.Column("app_id", sa.Text),
        sa.Column("conversation_id", sa.Text),
        sa.Column("node", sa.Text),
        sa.Column("node_type", sa.Text),
        *_context_columns(),
    )
    for table in ("dify_logs", "error"):
        for name, columns in _indexes(table):
            op.create_index(name, table, columns)
    op.create_index("ix_error_type_created", "error", ["type_error", "created_at"])
    op.create_index("ix_error_fingerprint_created", "error", ["fingerprint", "created_at"])


def downgrade() -> None:
    op.drop_table("error")
    op.drop_table("dify_logs")
