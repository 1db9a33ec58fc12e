"""Reading rows back, for assertions."""

from __future__ import annotations

import uuid
from datetime import timezone
from typing import Any

from sqlalchemy import func, select

from chatspan.store.engine import make_engine
from chatspan.store.tables import dify_logs, error

TABLES = {"dify_logs": dify_logs, "error": error}


def fetch_rows(url: str, table: str) -> list[dict[str, Any]]:
    engine = make_engine(url, timeout_s=30)
    try:
        with engine.connect() as connection:
            result = connection.execute(select(TABLES[table]).order_by(TABLES[table].c.created_at))
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def count_rows(url: str, table: str) -> int:
    engine = make_engine(url, timeout_s=30)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(TABLES[table]))
    finally:
        engine.dispose()


def rows_where(url: str, table: str, **equal: Any) -> list[dict[str, Any]]:
    """Rows whose columns equal the given values, oldest first."""
    engine = make_engine(url, timeout_s=30)
    selected = TABLES[table]
    query = select(selected).order_by(selected.c.created_at)
    for column, value in equal.items():
        query = query.where(selected.c[column] == value)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def comparable_rows(url: str, table: str) -> list[dict[str, Any]]:
    """A table's rows in a form two stores can be compared in: ids as canonical UUID
    text, times as UTC without a zone (SQLite keeps none), ordered by id."""
    comparable = []
    for original in fetch_rows(url, table):
        row = dict(original)
        row["id"] = str(uuid.UUID(str(row["id"])))
        moment = row["created_at"]
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        row["created_at"] = moment
        comparable.append(row)
    return sorted(comparable, key=lambda r: r["id"])
