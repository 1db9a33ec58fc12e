"""Exports: every row matching a filter, as CSV or JSON lines, streamed.

Rows come from a server-side cursor and leave as text a few at a time, so exporting
millions of rows takes the memory of a thousand. Columns are named as in the tables
(`input_text`, `output_text`, ...); `attributes` is JSON text in CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, Table, select

from chatspan.store.queries import (
    ChatFilters,
    ErrorFilters,
    as_utc,
    chat_conditions,
    error_conditions,
)
from chatspan.store.tables import dify_logs, error

Format = Literal["csv", "jsonl"]
FETCH_ROWS = 1_000
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def table_for(filters: ChatFilters | ErrorFilters) -> Table:
    """The table a filter selects from: chats or errors."""
    return dify_logs if isinstance(filters, ChatFilters) else error


def export_lines(engine: Engine, filters: ChatFilters | ErrorFilters, fmt: Format) -> Iterator[str]:
    """The export, a chunk of lines at a time: oldest row first."""
    table = table_for(filters)
    conditions = chat_conditions(filters) if table is dify_logs else error_conditions(filters)
    columns = [column.name for column in table.columns]
    query = select(table).where(*conditions).order_by(table.c.created_at, table.c.id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(columns)
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(
            query
        )
        for rows in result.partitions():
            for row in rows:
                values = [_plain(column, value) for column, value in zip(columns, row, strict=True)]
                if fmt == "csv":
                    writer.writerow(
                        json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v
                        for v in values
                    )
                else:
                    buffer.write(
                        json.dumps(dict(zip(columns, values, strict=True)), ensure_ascii=False)
                    )
                    buffer.write("\n")
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def _plain(column: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    return value
