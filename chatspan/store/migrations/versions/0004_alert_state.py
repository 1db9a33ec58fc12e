"""What the alerts have announced, kept in the database instead of the service's memory.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chatspan_alert_state",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_chatspan_alert_state_noted", "chatspan_alert_state", ["noted_at"])


def downgrade() -> None:
    op.drop_index("ix_chatspan_alert_state_noted", table_name="chatspan_alert_state")
    op.drop_table("chatspan_alert_state")
