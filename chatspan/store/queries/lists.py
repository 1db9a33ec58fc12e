"""Chats and errors, newest first, a page at a time, with a capped count of the rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone
from typing import Any

from sqlalchemy import Connection, Select, Table, func, literal, literal_column, select, tuple_

from chatspan.store.queries.filters import (
    ChatFilters,
    ErrorFilters,
    as_utc,
    chat_conditions,
    error_conditions,
)
from chatspan.store.queries.paging import Cursor, Paging
from chatspan.store.tables import dify_logs, error

COUNT_CAP = 10_000  # counting further would be slow on large tables; `total` stops here
SEARCH_COUNT_CAP = 1_000  # text search tests every row it counts: stop sooner


@dataclass
class Page:
    rows: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None
    total: int
    total_capped: bool


def list_chats(connection: Connection, filters: ChatFilters, paging: Paging) -> Page:
    cap = SEARCH_COUNT_CAP if filters.q else COUNT_CAP
    return _page(connection, dify_logs, chat_conditions(filters), paging, count_cap=cap)


def list_errors(connection: Connection, filters: ErrorFilters, paging: Paging) -> Page:
    return _page(connection, error, error_conditions(filters), paging)


def _page(
    connection: Connection,
    table: Table,
    conditions: list[Any],
    paging: Paging,
    count_cap: int = COUNT_CAP,
) -> Page:
    order = (table.c.created_at.desc(), table.c.id.desc())
    query: Select[Any] = (
        select(table).where(*conditions).order_by(*order).limit(paging.per_page + 1)
    )
    if paging.cursor is not None:
        query = query.where(
            tuple_(table.c.created_at, table.c.id)
            < tuple_(
                literal(paging.cursor.created_at.astimezone(timezone.utc), table.c.created_at.type),
                literal(paging.cursor.id, table.c.id.type),
            )
        )
    else:
        query = query.offset((paging.page - 1) * paging.per_page)
    rows = [dict(row._mapping) for row in connection.execute(query)]
    has_more = len(rows) > paging.per_page
    rows = rows[: paging.per_page]
    for row in rows:
        row["created_at"] = as_utc(row["created_at"])
    last = rows[-1] if rows else None
    capped: Select[Any] = (
        select(literal_column("1")).select_from(table).where(*conditions).limit(count_cap + 1)
    )
    total = connection.scalar(select(func.count()).select_from(capped.subquery())) or 0
    return Page(
        rows=rows,
        has_more=has_more,
        next_cursor=Cursor(last["created_at"], last["id"]).encode() if has_more and last else None,
        total=min(total, count_cap),
        total_capped=total > count_cap,
    )
