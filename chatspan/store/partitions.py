"""Monthly partitions for large PostgreSQL installations (opt in: `chatspan db partition`).

With both tables partitioned by month on `created_at`, retention drops whole months
(detach, then drop: no row-by-row delete, no bloat) and queries of recent data touch
recent partitions only. The primary key becomes (id, created_at), which the writer
already handles (ON CONFLICT DO NOTHING names no target; both are deterministic).

Converting copies the rows into the new partitioned table inside one transaction,
holding the tables locked meanwhile: exporters spool their batches until it is done.
A DEFAULT partition takes rows whose month has no partition yet, so a write never
fails; `chatspan db partition` (and `chatspan retention`) create the coming months'
partitions ahead of time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.schema import CreateIndex

from chatspan.store.engine import require_postgres
from chatspan.store.tables import dify_logs, error

_logger = logging.getLogger(__name__)
TABLES: tuple[Table, ...] = (dify_logs, error)


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    start: datetime  # inclusive
    end: datetime  # exclusive


def is_partitioned(connection: Connection, table: str) -> bool:
    found = connection.scalar(
        text(
            "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"
        ),
        {"name": table},
    )
    return bool(found)


def partition(engine: Engine) -> list[str]:
    """Convert both tables to monthly partitions, those not converted yet."""
    require_postgres(engine, "monthly partitions")
    done = []
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL timezone = 'UTC'"))
        for table in TABLES:
            if not is_partitioned(connection, table.name):
                _convert(connection, table)
                done.append(table.name)
    return done


def ensure_months(engine: Engine, months_ahead: int = 3, now: datetime | None = None) -> list[str]:
    """Partitions from this month to `months_ahead` months on, where missing."""
    require_postgres(engine, "monthly partitions")
    now = now or datetime.now(timezone.utc)
    created = []
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL timezone = 'UTC'"))
        for table in TABLES:
            if not is_partitioned(connection, table.name):
                continue
            existing = {p.name for p in partitions(connection, table.name)}
            for offset in range(months_ahead + 1):
                start = _month_start(now, offset)
                name = _partition_name(table.name, start)
                if name not in existing:
                    _create_partition(connection, table.name, start)
                    created.append(name)
    return created


def partitions(connection: Connection, table: str) -> list[Partition]:
    """The monthly partitions of `table`, oldest first (the DEFAULT one is not listed)."""
    rows = connection.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = :table AND p.relnamespace = current_schema()::regnamespace"
        ),
        {"table": table},
    )
    found = []
    for name, bound in rows:
        if "DEFAULT" in bound.upper():
            continue
        start, end = _bounds(bound)
        found.append(Partition(table, name, start, end))
    return sorted(found, key=lambda p: p.start)


def _convert(connection: Connection, table: Table) -> None:
    name = table.name
    old = f"{name}_unpartitioned"
    connection.execute(text(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE'))
    connection.execute(text(f'ALTER TABLE "{name}" RENAME TO "{old}"'))
    for index in table.indexes:  # free the names for the new table's indexes
        connection.execute(
            text(f'ALTER INDEX IF EXISTS "{index.name}" RENAME TO "{index.name}_old"')
        )
    connection.execute(text(f'ALTER INDEX IF EXISTS "{name}_pkey" RENAME TO "{name}_pkey_old"'))
    connection.execute(
        text(
            f'CREATE TABLE "{name}" (LIKE "{old}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS) '
            "PARTITION BY RANGE (created_at)"
        )
    )
    connection.execute(text(f'ALTER TABLE "{name}" ADD PRIMARY KEY (id, created_at)'))
    for index in table.indexes:
        connection.execute(CreateIndex(index))
    connection.execute(text(f'CREATE TABLE "{name}_default" PARTITION OF "{name}" DEFAULT'))
    span = connection.execute(text(f'SELECT min(created_at), max(created_at) FROM "{old}"')).one()
    if span[0] is not None:
        month = _month_start(span[0], 0)
        while month <= span[1]:
            _create_partition(connection, name, month)
            month = _month_start(month, 1)
    connection.execute(text(f'INSERT INTO "{name}" SELECT * FROM "{old}"'))
    connection.execute(text(f'DROP TABLE "{old}"'))
    _logger.info("chatspan: %s is now partitioned by month", name)


def _create_partition(connection: Connection, table: str, start: datetime) -> None:
    end = _month_start(start, 1)
    connection.execute(
        text(
            f'CREATE TABLE IF NOT EXISTS "{_partition_name(table, start)}" PARTITION OF "{table}" '
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    )


def _partition_name(table: str, start: datetime) -> str:
    return f"{table}_{start:%Y_%m}"


def _month_start(moment: datetime, months_later: int) -> datetime:
    moment = moment.astimezone(timezone.utc)
    index = moment.year * 12 + moment.month - 1 + months_later
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def _bounds(bound: str) -> tuple[datetime, datetime]:
    """FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')."""
    values = bound.split("'")
    return _timestamp(values[1]), _timestamp(values[3])


def _timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace(" ", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
