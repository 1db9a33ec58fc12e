"""Rows/s of the chatspan_postgres exporter vs raw COPY and vs one ORM insert per row.

Usage: python bench/export_throughput.py [--spans 20000] [--rounds 5] [--redacted]
Reads CHATSPAN_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) and
works in a scratch database it creates and drops. All ways run in this process,
interleaved round by round, so the ratios hold on a noisy machine.

The headline is the exporter against the limit: one raw COPY, in one transaction, of the
rows the exporter stores, already mapped, in the exporter's own COPY format. The
exporter also maps each span, and commits every 512 (the batch span processor's batch).

The spans are unmarked by default, as spans from another instrumentation or OTLP ingest
arrive: the mapping redacts their text. With ``--redacted`` they carry the mark chatspan's
instrumentation sets on text it redacted itself, which the mapping does not redact again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import psycopg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from sqlalchemy.orm import Session, registry

from chatspan.config import SpoolSettings, StoreSettings
from chatspan.exporters.postgres import PostgresSpanExporter
from chatspan.records import SpanData, map_spans
from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade
from chatspan.store.pg_copy import copy_values
from chatspan.store.tables import dify_logs

from pgdb import libpq_dsn, scratch_database
from rows import count_rows
from spans import make_chat_span

BATCH = 512  # the BatchSpanProcessor's default export batch size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--orm-rows", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--redacted", action="store_true", help="spans as chatspan's instrumentation marks them"
    )
    args = parser.parse_args()

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(args.spans):
        make_chat_span(tracer, i, redacted=args.redacted)
    spans = memory.get_finished_spans()

    base = os.environ.get("CHATSPAN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with scratch_database(base, "bench") as url:
        engine = make_engine(url, timeout_s=60)
        upgrade(engine)
        # No spool: a batch the database refused must fail the run, not wait on disk.
        exporter = PostgresSpanExporter(
            StoreSettings(database_url=url, export_timeout_s=60), SpoolSettings(enabled=False)
        )
        records = map_spans(SpanData.from_sdk(s) for s in spans).chats
        rows = [r.values() for r in records]
        orm_rows = [r.row() for r in records[: args.orm_rows]]
        orm_class = _orm_class()
        copy_connection = psycopg.connect(libpq_dsn(url))
        results: dict[str, list[float]] = {"exporter": [], "copy": [], "copy_one": [], "orm": []}
        for _ in range(args.rounds):
            _truncate(engine)
            results["exporter"].append(_time(len(spans), lambda: _export_all(exporter, spans)))
            _expect_rows(url, len(records))
            _truncate(engine)
            results["copy"].append(
                _time(len(rows), lambda: _raw_copy(copy_connection, rows, BATCH))
            )
            _expect_rows(url, len(rows))
            _truncate(engine)
            results["copy_one"].append(
                _time(len(rows), lambda: _raw_copy(copy_connection, rows, len(rows)))
            )
            _expect_rows(url, len(rows))
            _truncate(engine)
            results["orm"].append(
                _time(len(orm_rows), lambda: _orm_per_row(engine, orm_class, orm_rows))
            )
            _expect_rows(url, len(orm_rows))
        copy_connection.close()
        exporter.shutdown()
        engine.dispose()

    median = {name: statistics.median(values) for name, values in results.items()}
    print(
        f"exporter / one raw COPY = {_ratio(results, 'copy_one'):.2f}x  (target >= 0.8; "
        f"{args.spans} rows, one transaction; median of {args.rounds} rounds)"
    )
    marks = "marked as redacted by chatspan" if args.redacted else "unmarked: the mapping redacts"
    print(f"spans per round: {args.spans} (ORM: {args.orm_rows}), rounds: {args.rounds}; {marks}")
    for name, label in [
        ("exporter", "chatspan_postgres exporter"),
        ("copy", f"raw COPY, {BATCH} rows/commit"),
        ("copy_one", "raw COPY, one commit"),
        ("orm", "ORM insert+commit per row"),
    ]:
        rounds = ", ".join(f"{v:,.0f}" for v in results[name])
        print(f"  {label:<30} {median[name]:>10,.0f} rows/s   (rounds: {rounds})")
    print(
        f"exporter / raw COPY    = {_ratio(results, 'copy'):.2f}x  "
        f"({BATCH} rows per commit; target >= 0.6)"
    )
    print(f"exporter / ORM per row = {_ratio(results, 'orm'):.1f}x  (target >= 10)")


def _ratio(results: dict[str, list[float]], baseline: str) -> float:
    """The median of the round-by-round ratios: each pair ran back to back."""
    pairs = zip(results["exporter"], results[baseline], strict=True)
    return statistics.median(mine / theirs for mine, theirs in pairs)


def _time(count: int, action) -> float:
    started = time.perf_counter()
    action()
    return count / (time.perf_counter() - started)


def _export_all(exporter: PostgresSpanExporter, spans) -> None:
    for start in range(0, len(spans), BATCH):
        result = exporter.export(spans[start : start + BATCH])
        if result is not SpanExportResult.SUCCESS:
            raise SystemExit("the exporter failed: see the log line above")


def _raw_copy(connection: psycopg.Connection, rows: list[tuple], batch: int) -> None:
    """COPY the prepared rows, `batch` rows per transaction, as the exporter COPies."""
    for start in range(0, len(rows), batch):
        with connection.transaction(), connection.cursor() as cursor:
            copy_values(cursor, dify_logs, rows[start : start + batch])


def _orm_class():
    class ChatLog:
        pass

    registry().map_imperatively(ChatLog, dify_logs)
    return ChatLog


def _orm_per_row(engine, orm_class, rows: list[dict]) -> None:
    with Session(engine) as session:
        for row in rows:
            session.add(orm_class(**{**row, "id": uuid.uuid4()}))
            session.commit()


def _expect_rows(url: str, expected: int) -> None:
    """A rate only counts rows that reached the table."""
    stored = count_rows(url, "dify_logs")
    if stored != expected:
        raise SystemExit(f"{stored} chat rows stored, {expected} expected")


def _truncate(engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE dify_logs, error"))


if __name__ == "__main__":
    main()
