"""An index for listing chats by status (failed and cancelled chats are a few percent).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dify_logs_status_created", "dify_logs", ["status", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_dify_logs_status_created", table_name="dify_logs")
