"""What the admin asks for: a time window and filters on chats or errors, as the WHERE
conditions every read shares (lists, groups, statistics, exports, alerts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Table, or_

from chatspan.store.tables import dify_logs, error


class QueryError(ValueError):
    """A parameter the query cannot use (a malformed cursor, an empty window)."""


@dataclass(frozen=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ChatFilters:
    window: Window = field(default_factory=Window)
    user_id: str | None = None
    app_id: str | None = None
    conversation_id: str | None = None
    status: str | None = None
    q: str | None = None


@dataclass(frozen=True)
class ErrorFilters:
    window: Window = field(default_factory=Window)
    user_id: str | None = None
    app_id: str | None = None
    type_error: str | None = None
    node: str | None = None
    fingerprint: str | None = None
    handled: bool | None = False  # errors the app recovered from; None: both kinds


def chat_conditions(filters: ChatFilters) -> list[Any]:
    """The WHERE conditions of a chat filter (lists and exports share them)."""
    table = dify_logs
    conditions = window_conditions(table, filters.window) + _equal(
        table,
        user_id=filters.user_id,
        app_id=filters.app_id,
        conversation_id=filters.conversation_id,
        status=filters.status,
    )
    if filters.q:
        pattern = "%" + _escape_like(filters.q) + "%"
        conditions.append(
            or_(
                table.c.input_text.ilike(pattern, escape="\\"),
                table.c.output_text.ilike(pattern, escape="\\"),
            )
        )
    return conditions


def error_conditions(filters: ErrorFilters) -> list[Any]:
    return window_conditions(error, filters.window) + _equal(
        error,
        user_id=filters.user_id,
        app_id=filters.app_id,
        type_error=filters.type_error,
        node=filters.node,
        fingerprint=filters.fingerprint,
        handled=filters.handled,
    )


def unhandled_errors(window: Window) -> list[Any]:
    """Statistics and alerts count the errors the app did not recover from."""
    return error_conditions(ErrorFilters(window))


def window_conditions(table: Table, window: Window) -> list[Any]:
    # Bounds in UTC: SQLite compares the stored text, which is UTC without a zone.
    conditions = []
    if window.since is not None:
        conditions.append(table.c.created_at >= window.since.astimezone(timezone.utc))
    if window.until is not None:
        conditions.append(table.c.created_at < window.until.astimezone(timezone.utc))
    return conditions


def as_utc(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back; chatspan stores UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _equal(table: Table, **values: Any) -> list[Any]:
    return [table.c[name] == value for name, value in values.items() if value is not None]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
