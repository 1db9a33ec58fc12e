"""The one writer: spans into the tables, in one transaction per batch, idempotently.

Row ids are deterministic, so a row that is already stored is skipped, never
duplicated: a retried export, a replayed spool file or the same chat arriving by two
roads stores it once.

On PostgreSQL with psycopg 3 chats are mapped and COPied straight into the table in one
stream (:mod:`chatspan.store.pg_copy`): the database works on early rows while later
spans are still being mapped. Only a batch that meets a stored row (a retry) is merged
instead, in a second transaction. Other drivers and SQLite use
``INSERT ... ON CONFLICT DO NOTHING``. (No conflict target is named: on the
monthly-partitioned schema the key is (id, created_at), and both are deterministic.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table, exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chatspan.records import (
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
                self._copy(spans, batch)
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

    def _copy(self, spans: Iterable[SpanData], batch: MappedBatch) -> None:
        from chatspan.store import pg_copy  # noqa: PLC0415  (imports psycopg: this path only)

        try:
            with self._engine.begin() as connection:
                pg_copy.copy_rows(connection, dify_logs, map_spans_lazily(spans, batch))
                self._join_errors_to_chats(connection, batch)
                pg_copy.copy_rows(connection, error, batch.errors)
        except pg_copy.AlreadyStored:  # a retry: that transaction is rolled back
            with self._engine.begin() as connection:
                pg_copy.merge_rows(connection, dify_logs, batch.chats)
                self._join_errors_to_chats(connection, batch)
                pg_copy.merge_rows(connection, error, batch.errors)

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
