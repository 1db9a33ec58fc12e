"""Exports: every row matching a filter, as CSV or JSON lines, streamed.

Rows come from a server-side cursor and leave as text a few at a time, so exporting
millions of rows takes the memory of a thousand. Columns are named as in the tables
(`input_text`, `output_text`, ...); `attributes` is JSON text in CSV.

CSV is opened by spreadsheets, which run a cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return as a formula: such a cell gets a leading ``'`` (as
OWASP advises), which makes it text. JSON lines keep every value exact.

An export that fails before its first chunk raises (the API answers 503, the command
fails); one that fails after it cannot take back what was sent, so it ends with a last
line saying it is incomplete: in CSV a row whose one cell starts with ``#`` (no id does),
in JSON lines an object with an ``error`` key.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, Table, select

from chatspan.store.engine import describe_error
from chatspan.store.queries.filters import (
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
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# RFC 4180's line end; with it the csv module also quotes a cell holding a bare CR, which
# a reader would otherwise take for the end of a row (and the rest for a row of its own).
CSV_LINE_END = "\r\n"

_logger = logging.getLogger(__name__)


def table_for(filters: ChatFilters | ErrorFilters) -> Table:
    """The table a filter selects from: chats or errors."""
    return dify_logs if isinstance(filters, ChatFilters) else error


class ExportLines:
    """One export, a chunk of lines at a time, oldest row first; after it has been
    read, `incomplete` says why it stopped early (None when every row was written)."""

    def __init__(self, engine: Engine, filters: ChatFilters | ErrorFilters, fmt: Format) -> None:
        self.engine = engine
        self.filters = filters
        self.fmt = fmt
        self.rows = 0
        self.incomplete: str | None = None

    def __iter__(self) -> Iterator[str]:
        started = False
        try:
            for chunk in self._chunks():
                started = True
                yield chunk
        except Exception as failure:
            if not started:
                raise
            self.incomplete = (
                f"export incomplete: it stopped after {self.rows} rows "
                f"({type(failure).__name__}); the rows after them are missing"
            )
            _logger.warning("chatspan: %s: %s", self.incomplete, describe_error(failure))
            yield self._last_line(self.incomplete)

    def _chunks(self) -> Iterator[str]:
        filters, table = self.filters, table_for(self.filters)
        if isinstance(filters, ChatFilters):
            conditions = chat_conditions(filters)
        else:
            conditions = error_conditions(filters)
        columns = [column.name for column in table.columns]
        query = select(table).where(*conditions).order_by(table.c.created_at, table.c.id)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=CSV_LINE_END)
        if self.fmt == "csv":
            writer.writerow(columns)
        with self.engine.connect() as connection:
            result = connection.execution_options(
                stream_results=True, yield_per=FETCH_ROWS
            ).execute(query)
            for rows in result.partitions():
                for row in rows:
                    values = [
                        _plain(column, value) for column, value in zip(columns, row, strict=True)
                    ]
                    if self.fmt == "csv":
                        writer.writerow(_cell(value) for value in values)
                    else:
                        buffer.write(
                            json.dumps(dict(zip(columns, values, strict=True)), ensure_ascii=False)
                        )
                        buffer.write("\n")
                self.rows += len(rows)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue()

    def _last_line(self, message: str) -> str:
        if self.fmt == "csv":
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator=CSV_LINE_END).writerow([f"# chatspan: {message}"])
            return buffer.getvalue()
        return json.dumps({"error": f"chatspan: {message}", "rows": self.rows}) + "\n"


def _plain(column: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    return value


def _cell(value: Any) -> Any:
    """A CSV cell: JSON for the attributes, text a spreadsheet will not run as a formula."""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
