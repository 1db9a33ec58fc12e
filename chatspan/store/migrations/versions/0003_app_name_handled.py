"""The app's name on each chat; errors the app recovered from marked as handled.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dify_logs", sa.Column("app_name", sa.Text))
    op.add_column(
        "error", sa.Column("handled", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("error") as error:
        error.drop_column("handled")
    with op.batch_alter_table("dify_logs") as chats:
        chats.drop_column("app_name")
