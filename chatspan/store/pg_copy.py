"""COPY through psycopg 3: how the writer stores a batch on PostgreSQL at full speed.

A batch that was never stored is COPied straight into its tables, inside the batch's one
transaction, with no savepoint and no staging table: nothing but the rows goes to the
server. A retried batch (a re-export, a replayed spool file, the same chat by two roads)
is the exception; its first row that is already there fails the transaction on the
primary key, and only then is the batch merged, in a new transaction, through a
temporary table and ``INSERT ... ON CONFLICT DO NOTHING``. (No conflict target is
named: on the monthly-partitioned schema the key is (id, created_at), both
deterministic.)

Rows go as text COPY, not binary. Binary costs both sides less per row, but the server
then stores rows in runs of 1000 (it counts 64 kB runs in text lines only), so a batch
of 512 was stored only after its last row had been sent: the server idled while spans
were mapped, and the exporter idled while the server stored them. In text, the server
stores each 64 kB while the next rows are mapped (bench/export_throughput.py: the
exporter makes about 0.65x of one raw COPY of its rows this way, under 0.5x in binary,
each against a raw COPY in its own format).
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from json import encoder as json_encoder
from typing import Any, cast

import psycopg
from psycopg.adapt import Dumper
from sqlalchemy import JSON, BigInteger, Boolean, Connection, DateTime, Double, Table, exc
from sqlalchemy.types import TypeEngine

from chatspan.records import CHAT_COLUMNS, ERROR_COLUMNS, ChatRecord, ErrorRecord
from chatspan.store.tables import dify_logs

Records = Iterable[ChatRecord] | Iterable[ErrorRecord]


class AlreadyStored(Exception):
    """A row of the batch is stored already: the batch is a retry, to be merged."""


def copy_rows(connection: Connection, table: Table, records: Records) -> None:
    """COPY `records` into `table` in the connection's transaction.

    `records` may be a generator that maps spans as it goes: the server stores early rows
    while later ones are made. It is always consumed to its end, so that whoever filled
    it has the whole batch, even when the COPY fails.

    Raises :class:`AlreadyStored` on a duplicate id (the transaction is then failed and
    must be rolled back), and SQLAlchemy's ``DataError`` when the database rejects the
    data itself, the signal the INSERT path gives, so the writer can isolate the bad row.
    """
    remaining = iter(records)
    try:
        first = next(remaining, None)
        if first is not None:
            rows = map(_values, chain((first,), remaining))
            copy_values(_cursor(connection), table, rows)
    except psycopg.errors.UniqueViolation as duplicate:
        raise AlreadyStored from duplicate
    except (psycopg.DataError, psycopg.IntegrityError) as failure:
        raise exc.DataError(None, None, failure) from failure
    finally:
        for _record in remaining:  # what a failed COPY left unmapped
            pass


def merge_rows(
    connection: Connection, table: Table, records: Sequence[ChatRecord] | Sequence[ErrorRecord]
) -> None:
    """Store those of `records` that `table` does not hold yet."""
    if not records:
        return
    stage = f"chatspan_stage_{table.name}"
    cursor = _cursor(connection)
    try:
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table.name}") ON COMMIT DELETE ROWS'
        )
        copy_values(cursor, table, map(_values, records), into=stage)
        column_list = _copy_columns(table)[0]
        cursor.execute(
            f'INSERT INTO "{table.name}" ({column_list}) SELECT {column_list} FROM "{stage}" '
            "ON CONFLICT DO NOTHING"
        )
    except (psycopg.DataError, psycopg.IntegrityError) as failure:
        raise exc.DataError(None, None, failure) from failure


def copy_values(
    cursor: psycopg.Cursor[Any],
    table: Table,
    rows: Iterable[Sequence[Any]],
    *,
    into: str | None = None,
) -> None:
    """COPY `rows`, each the ``values()`` of a record of `table`, into `table` (or into
    the table named `into`, which has the same columns)."""
    column_list, copy_types = _copy_columns(table)
    cursor.adapters.register_dumper(None, _JsonbDumper)
    with cursor.copy(f'COPY "{into or table.name}" ({column_list}) FROM STDIN') as copy:
        # Declared types let psycopg pick each column's dumper once, not per value.
        copy.set_types(copy_types)
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def _cursor(connection: Connection) -> psycopg.Cursor[Any]:
    driver = connection.connection.driver_connection
    return cast("psycopg.Connection[Any]", driver).cursor()


_values = operator.methodcaller("values")


def _json_encoder() -> Callable[[Any], str]:
    """What ``json.dumps`` does, without making an encoder for every value as it does.

    The C encoder is made once here; making it per value (``json.dumps``,
    ``JSONEncoder.encode``) cost more than encoding a record's attributes.
    """
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without json's C accelerator
        return json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
    # markers=None: no cycle check; the mapping leaves only plain values in attributes.
    encode = make(
        None, _not_json, json_encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    return lambda value: "".join(encode(value, 0))


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _JsonbDumper(Dumper):
    """The attributes column as JSON text (jsonb keeps no formatting: the stored value is
    what ``json.dumps`` would give)."""

    oid = psycopg.postgres.types["jsonb"].oid
    _encode = staticmethod(_json_encoder())

    def dump(self, obj: Any) -> bytes:
        return self._encode(obj).encode()


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
