"""The one writer: spans into the tables, in one transaction per batch, idempotently.

Row ids are deterministic, so a row that is already stored is skipped, never
duplicated: a retried export, a replayed spool file or the same chat arriving by two
roads stores it once.

On PostgreSQL with psycopg 3 chats are mapped and COPied straight into the table in one
stream, inside a savepoint: the fastest path there is, and the database works on early
rows while later spans are still being mapped. Only when a row is already there (a
retry) does it fall back to COPY into a temporary table and
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. Other drivers and SQLite use a
multi-row ``INSERT ... ON CONFLICT DO NOTHING``. (No conflict target is named: on the
monthly-partitioned schema the key is (id, created_at), and both are deterministic.)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import JSON, BigInteger, Boolean, Connection, DateTime, Double, Engine, Table, exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.types import TypeEngine

from chatspan.records import (
    CHAT_COLUMNS,
    ERROR_COLUMNS,
    ChatRecord,
    ErrorRecord,
    MappedBatch,
    SpanData,
    join_errors_to_chats,
    map_spans,
    map_spans_lazily,
)
from chatspan.store.engine import describe_error
from chatspan.store.error_context import ErrorContextJoin
from chatspan.store.tables import dify_logs, error

_logger = logging.getLogger(__name__)

Records = Iterable[ChatRecord] | Iterable[ErrorRecord]


@dataclass(frozen=True)
class WriteResult:
    """What became of a batch: records stored (or already there), spans or rows dropped."""

    chats: int
    errors: int
    skipped_spans: int
    rejected_rows: int


class RecordWriter:
    """Writes batches of spans into one database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._uses_copy = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._error_context = ErrorContextJoin()

    @property
    def engine(self) -> Engine:
        return self._engine

    def write(self, spans: Iterable[SpanData]) -> WriteResult:
        """Map and store a batch of spans.

        The batch goes in as one transaction. If the database rejects the data itself
        (not the connection), the batch is retried record by record so that one bad
        record costs only itself. Connection errors propagate for the caller to handle.
        """
        batch = MappedBatch()
        rejected = 0
        try:
            if self._uses_copy:
                with self._engine.begin() as connection:
                    _copy(connection, dify_logs, map_spans_lazily(spans, batch), batch.chats)
                    self._join_errors_to_chats(connection, batch)
                    if batch.errors:
                        _copy(connection, error, batch.errors, batch.errors)
            else:
                batch = map_spans(spans)
                with self._engine.begin() as connection:
                    self._insert_ignoring_duplicates(connection, dify_logs, batch.chats)
                    self._join_errors_to_chats(connection, batch)
                    self._insert_ignoring_duplicates(connection, error, batch.errors)
        except (exc.DataError, exc.IntegrityError) as failure:
            _logger.warning(
                "chatspan: the database rejected a batch (%s); storing it record by record",
                describe_error(failure),
            )
            rejected = self._write_one_by_one(batch)
        return WriteResult(len(batch.chats), len(batch.errors), batch.skipped, rejected)

    def _join_errors_to_chats(self, connection: Connection, batch: MappedBatch) -> None:
        """Errors inside a chat's trace take the chat's context, in this batch or across."""
        self._error_context.before_errors(connection, join_errors_to_chats(batch))
        self._error_context.after_chats(connection, batch.chats)

    def _insert_ignoring_duplicates(
        self, connection: Connection, table: Table, records: Sequence[ChatRecord | ErrorRecord]
    ) -> None:
        if records:
            statement = self._insert(table).on_conflict_do_nothing()
            connection.execute(statement, [record.row() for record in records])

    def _write_one_by_one(self, batch: MappedBatch) -> int:
        rejected = 0
        pairs = [(dify_logs, r) for r in batch.chats] + [(error, r) for r in batch.errors]
        for table, record in pairs:
            try:
                with self._engine.begin() as connection:
                    self._insert_ignoring_duplicates(connection, table, [record])
            except (exc.DataError, exc.IntegrityError) as failure:
                rejected += 1
                _logger.warning(
                    "chatspan: the database rejected a %s row (%s); skipped it",
                    table.name,
                    describe_error(failure),
                )
        return rejected


def _copy(
    connection: Connection,
    table: Table,
    records: Records,
    collected: Sequence[ChatRecord | ErrorRecord],
) -> None:
    """COPY `records` into `table`; on a duplicate id, insert only the new ones.

    `collected` is the list `records` fills as it is consumed (or `records` itself),
    so the fallback can send the whole batch again.
    """
    import psycopg  # noqa: PLC0415  (only this path needs the driver itself)

    cursor = connection.connection.driver_connection.cursor()
    column_list, copy_types = _copy_columns(table)

    def copy_into(target: str, rows: Records) -> None:
        with cursor.copy(f'COPY "{target}" ({column_list}) FROM STDIN') as copy:
            # Declared types let psycopg skip choosing a dumper for every value.
            copy.set_types(copy_types)
            for record in rows:
                copy.write_row(record.values())

    try:
        try:
            with connection.begin_nested():
                copy_into(table.name, records)
        except psycopg.errors.UniqueViolation:
            _finish(records)
            stage = f"chatspan_stage_{table.name}"
            cursor.execute(
                f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table.name}") '
                "ON COMMIT DELETE ROWS"
            )
            copy_into(stage, collected)
            cursor.execute(
                f'INSERT INTO "{table.name}" ({column_list}) SELECT {column_list} FROM "{stage}" '
                "ON CONFLICT DO NOTHING"
            )
    except (psycopg.DataError, psycopg.IntegrityError) as failure:
        # The same signal the INSERT path gives, so write() isolates the bad record.
        raise exc.DataError(None, None, failure) from failure
    finally:
        _finish(records)


@functools.cache
def _copy_columns(table: Table) -> tuple[str, tuple[str, ...]]:
    """The COPY column list of `table` in the order of its record's values, and their types.

    The order comes from the record, whose ``values()`` fill each row: were the table
    declared in another order, the rows still land in the right columns.
    """
    names = CHAT_COLUMNS if table is dify_logs else ERROR_COLUMNS
    column_list = ", ".join(f'"{name}"' for name in names)
    return column_list, tuple(_copy_type(table.c[name].type) for name in names)


def _copy_type(column_type: TypeEngine) -> str:
    """The PostgreSQL type psycopg should dump a column's Python values as, in text COPY."""
    if isinstance(column_type, JSON):
        return "jsonb"
    if isinstance(column_type, DateTime):
        return "timestamptz"
    if isinstance(column_type, Double):
        return "float8"
    if isinstance(column_type, BigInteger):
        return "int8"
    if isinstance(column_type, Boolean):
        return "bool"
    return "text"  # text, varchar, and ids (hex strings the server parses as uuid)


def _finish(records: Records) -> None:
    """Map whatever a failed COPY left unconsumed, so the batch is whole for a retry."""
    for _record in records:
        pass
