"""Retention: remove (or strip the text of) rows older than a cutoff, without long locks.

Rows are deleted in bounded batches, each its own short transaction, so exporters keep
writing meanwhile. On the monthly-partitioned schema, months entirely older than the
cutoff are detached and dropped whole; only the month the cutoff falls in is deleted
row by row. `redact` keeps the rows and their metrics but blanks the chat text (and
error messages), for installations that may keep statistics longer than content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Delete, Engine, Update, and_, delete, func, or_, select, text, update

from chatspan.store import partitions
from chatspan.store.tables import metadata

# Columns that hold content, blanked by `redact`.
CONTENT = {"dify_logs": ("input_text", "output_text"), "error": ("error_message",)}
BATCH_ROWS = 5_000

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class RetentionResult:
    table: str
    matched: int
    total: int  # rows in the table, matched or not
    changed: int = 0
    dropped_partitions: list[str] = field(default_factory=list)


def apply(
    engine: Engine,
    table_name: str,
    cutoff: datetime,
    *,
    dry_run: bool = False,
    redact: bool = False,
    batch_rows: int = BATCH_ROWS,
    progress: Progress = lambda done, total: None,
) -> RetentionResult:
    """Delete (or, with `redact`, blank the content of) rows created before `cutoff`."""
    table = metadata.tables[table_name]
    older = table.c.created_at < cutoff
    if redact:
        older = and_(older, or_(*(table.c[c].is_not(None) for c in CONTENT[table_name])))
    with engine.connect() as connection:
        matched = connection.scalar(select(func.count()).select_from(table).where(older)) or 0
        total = connection.scalar(select(func.count()).select_from(table)) or 0
    whole_months = [] if redact else _months_before(engine, table_name, cutoff)
    result = RetentionResult(table_name, matched, total)
    if dry_run or not matched:
        result.dropped_partitions = [p.name for p in whole_months] if dry_run else []
        return result
    progress(0, matched)
    for month in whole_months:
        result.changed += _drop_partition(engine, month)
        result.dropped_partitions.append(month.name)
        progress(result.changed, matched)
    while True:
        batch = select(table.c.id).where(older).limit(batch_rows).scalar_subquery()
        statement: Update | Delete
        if redact:
            statement = (
                update(table)
                .where(table.c.id.in_(batch))
                .values(dict.fromkeys(CONTENT[table_name]))
            )
        else:
            statement = delete(table).where(table.c.id.in_(batch))
        with engine.begin() as connection:
            changed = connection.execute(statement).rowcount
        if not changed:
            break
        result.changed += changed
        progress(min(result.changed, matched), matched)
    return result


def _months_before(engine: Engine, table_name: str, cutoff: datetime) -> list[partitions.Partition]:
    if engine.dialect.name != "postgresql":
        return []
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL timezone = 'UTC'"))
        if not partitions.is_partitioned(connection, table_name):
            return []
        return [p for p in partitions.partitions(connection, table_name) if p.end <= cutoff]


def _drop_partition(engine: Engine, month: partitions.Partition) -> int:
    with engine.begin() as connection:
        rows = connection.scalar(text(f'SELECT count(*) FROM "{month.name}"'))
        connection.execute(text(f'ALTER TABLE "{month.table}" DETACH PARTITION "{month.name}"'))
        connection.execute(text(f'DROP TABLE "{month.name}"'))
    return rows
