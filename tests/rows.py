"""Reading rows back, for assertions."""

from __future__ import annotations

from datetime import timezone
from typing import Any

from sqlalchemy import Select, func, select

from chatspan.store.engine import make_engine
from chatspan.store.tables import metadata

TABLES = metadata.tables


def fetch_rows(url: str, table: str) -> list[dict[str, Any]]:
    selected = TABLES[table]
    return _read(url, select(selected).order_by(selected.c.created_at))


def count_rows(url: str, table: str) -> int:
    return _read(url, select(func.count().label("count")).select_from(TABLES[table]))[0]["count"]


def rows_where(url: str, table: str, **equal: Any) -> list[dict[str, Any]]:
    """Rows whose columns equal the given values, oldest first."""
    selected = TABLES[table]
    query = select(selected).order_by(selected.c.created_at)
    for column, value in equal.items():
        query = query.where(selected.c[column] == value)
    return _read(url, query)


def _read(url: str, query: Select) -> list[dict[str, Any]]:
    engine = make_engine(url, timeout_s=30)  # and disposed: no connection outlives a read
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def comparable_rows(url: str, table: str) -> list[dict[str, Any]]:
    """A table's rows in a form two stores can be compared in: times as UTC without a
    zone (SQLite keeps none), ordered by id."""
    comparable = []
    for original in fetch_rows(url, table):
        row = dict(original)
        moment = row["created_at"]
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        row["created_at"] = moment
        comparable.append(row)
    return sorted(comparable, key=lambda r: r["id"])
