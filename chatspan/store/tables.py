"""The tables, as SQLAlchemy Core: the same schema on PostgreSQL and SQLite.

Names are kept from the original Dify logging system (`dify_logs`, `error`) so existing
dashboards and queries keep working. Indexes follow the admin queries: a user's history,
an app's chats, a conversation in order, errors by type and by fingerprint, and time.
`chatspan_alert_state` is the query service's own: what its alerts have announced.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# JSONB on PostgreSQL (indexable, compact); JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)

dify_logs = Table(
    "dify_logs",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("created_at", Timestamp, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("app_id", Text),
    Column("app_name", Text),
    Column("conversation_id", Text),
    Column("message_id", Text),
    Column("user_id", Text),
    Column("input_text", Text),
    Column("output_text", Text),
    Column("latency_ms", Double),
    Column("time_to_first_token_ms", Double),
    Column("model", Text),
    Column("provider", Text),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    Column("status", String(16), nullable=False),
    Column("response_mode", String(16)),
    Column("route", Text),
    Column("service_name", Text),
    Column("attributes", Json),
    Index("ix_dify_logs_user_created", "user_id", "created_at", "id"),
    Index("ix_dify_logs_app_created", "app_id", "created_at"),
    Index("ix_dify_logs_conversation_created", "conversation_id", "created_at"),
    Index("ix_dify_logs_status_created", "status", "created_at", "id"),
    Index("ix_dify_logs_created", "created_at", "id"),
    Index("ix_dify_logs_trace", "trace_id"),
)

error = Table(
    "error",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("created_at", Timestamp, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("type_error", Text, nullable=False),
    Column("error_message", Text),
    Column("stacktrace", Text),
    Column("fingerprint", String(64)),
    Column("user_id", Text),
    Column("app_id", Text),
    Column("conversation_id", Text),
    Column("node", Text),
    Column("node_type", Text),
    Column("route", Text),
    Column("service_name", Text),
    Column("handled", Boolean, nullable=False, server_default=false()),
    Column("attributes", Json),
    Index("ix_error_user_created", "user_id", "created_at", "id"),
    Index("ix_error_app_created", "app_id", "created_at"),
    Index("ix_error_conversation_created", "conversation_id", "created_at"),
    Index("ix_error_type_created", "type_error", "created_at"),
    Index("ix_error_fingerprint_created", "fingerprint", "created_at"),
    Index("ix_error_created", "created_at", "id"),
    Index("ix_error_trace", "trace_id"),
)

# What the alerts have announced, one row per rule ("errors", "error_rate") or error
# fingerprint ("fingerprint:<fingerprint>"): a rule is not repeated within its cool-down,
# a new error is announced once, and neither is forgotten when the service restarts.
alert_state = Table(
    "chatspan_alert_state",
    metadata,
    Column("key", Text, primary_key=True),
    Column("noted_at", Timestamp, nullable=False),
    Index("ix_chatspan_alert_state_noted", "noted_at"),
)
