"""Operator features on a seeded store: retention (batched, dry run, redaction, while
exporters write), monthly partitions on PostgreSQL, and streamed exports."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from memory import peak_growth

from chatspan.config import ApiSettings, SpoolSettings, StoreSettings
from chatspan.exporters.postgres import PostgresSpanExporter
from chatspan.query_api import create_app
from chatspan.query_api.state import state_of
from chatspan.store import partitions, retention
from chatspan.store.engine import make_engine
from chatspan.store.export import ExportLines
from chatspan.store.migrate import upgrade
from chatspan.store.queries import ChatFilters, Window
from chatspan.store.writer import RecordWriter

from rows import comparable_rows, count_rows, fetch_rows
from seed import BASE, chat_span, seed
from servers import clean_env
from spans import chat_spans

CUTOFF = BASE + timedelta(days=7)
ADMIN_KEY = "operations-admin-key-0123456789"


@pytest.fixture
def store(database_url):
    chats, errors = seed(database_url)
    engine = make_engine(database_url, timeout_s=30)
    yield database_url, engine, chats, errors
    engine.dispose()


def test_a_dry_run_only_counts(store):
    url, engine, chats, _ = store
    result = retention.apply(engine, "dify_logs", CUTOFF, dry_run=True)
    assert result.matched == sum(c.created_at < CUTOFF for c in chats)
    assert result.changed == 0
    assert count_rows(url, "dify_logs") == len(chats)


def test_old_rows_are_deleted_in_batches_and_newer_ones_kept(store):
    url, engine, chats, errors = store
    seen = []
    for table, rows in (("dify_logs", chats), ("error", errors)):
        result = retention.apply(
            engine, table, CUTOFF, batch_rows=7, progress=lambda d, t: seen.append((d, t))
        )
        assert result.changed == sum(r.created_at < CUTOFF for r in rows)
        assert {str(r["id"]).replace("-", "") for r in fetch_rows(url, table)} == {
            r.id.replace("-", "") for r in rows if r.created_at >= CUTOFF
        }
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1]
    assert len(seen) > 4  # several batches


def test_redaction_keeps_rows_and_metrics_and_blanks_the_text(store):
    url, engine, chats, errors = store
    result = retention.apply(engine, "dify_logs", CUTOFF, redact=True)
    assert result.changed == sum(c.created_at < CUTOFF for c in chats)
    rows = fetch_rows(url, "dify_logs")
    assert len(rows) == len(chats)
    for row in rows:
        old = row["created_at"].replace(tzinfo=timezone.utc) < CUTOFF
        assert (row["input_text"] is None) == old
        assert (row["output_text"] is None) == old
        assert row["latency_ms"] is not None and row["input_tokens"] is not None
    assert retention.apply(engine, "dify_logs", CUTOFF, redact=True).changed == 0  # nothing left
    retention.apply(engine, "error", CUTOFF, redact=True)
    kept = fetch_rows(url, "error")
    assert len(kept) == len(errors)
    assert all(
        r["error_message"] is None
        for r in kept
        if r["created_at"].replace(tzinfo=timezone.utc) < CUTOFF
    )


def test_retention_runs_safely_while_exporters_write(store):
    url, engine, _chats, _ = store
    exporter = PostgresSpanExporter(StoreSettings(database_url=url), SpoolSettings(enabled=False))
    exports = 20
    fresh = chat_spans(20 * exports)  # made now: newer than the cutoff
    results = []
    released, finished = threading.Semaphore(0), threading.Semaphore(0)

    def write() -> None:
        for i in range(exports):
            released.acquire()
            results.append(exporter.export(fresh[20 * i : 20 * (i + 1)]))
            finished.release()

    seen = []  # exports finished when each retention batch began

    def between_batches(_done: int, _total: int) -> None:
        if len(seen) < exports:
            if seen:
                finished.acquire()  # the export let go last time is stored
            seen.append(len(results))
            released.release()  # the next one runs alongside retention's next batch

    writer = threading.Thread(target=write)
    writer.start()
    retention.apply(
        engine,
        "dify_logs",
        datetime.now(timezone.utc) - timedelta(days=1),
        batch_rows=5,
        progress=between_batches,
    )
    for _ in range(exports - len(seen)):
        released.release()
    writer.join()
    exporter.shutdown()
    assert len(seen) > 3 and seen == list(range(len(seen))), "the two did not interleave"
    assert all(r.name == "SUCCESS" for r in results)
    assert count_rows(url, "dify_logs") == 20 * exports  # the seed is old, the fresh all here


# -- monthly partitions (PostgreSQL) -------------------------------------------------


def _months_of_chats(url: str) -> list:
    """Chats in August to November 2026 and one far in the future."""
    spans, moments = [], []
    for i, month in enumerate([8, 8, 9, 9, 10, 10, 10, 11]):
        moment = datetime(2026, month, 3 + 7 * (i % 3), tzinfo=timezone.utc)
        data, _chat = chat_span(500 + i, moment)
        spans.append(data)
        moments.append(moment)
    engine = make_engine(url, timeout_s=30)
    RecordWriter(engine).write(spans)
    engine.dispose()
    return moments


def test_partitioning_keeps_every_row_and_retention_drops_whole_months(empty_postgres_database):
    url = empty_postgres_database
    engine = make_engine(url, timeout_s=60)
    upgrade(engine)
    seed(url)
    moments = _months_of_chats(url)
    before = {table: comparable_rows(url, table) for table in ("dify_logs", "error")}

    assert partitions.partition(engine) == ["dify_logs", "error"]
    assert partitions.partition(engine) == []  # once is enough
    with engine.connect() as connection:
        assert partitions.is_partitioned(connection, "dify_logs")
        names = [p.name for p in partitions.partitions(connection, "dify_logs")]
    assert names == [
        "dify_logs_2026_08",
        "dify_logs_2026_09",
        "dify_logs_2026_10",
        "dify_logs_2026_11",
    ]
    for table in ("dify_logs", "error"):
        assert comparable_rows(url, table) == before[table]

    created = partitions.ensure_months(engine, 2, now=datetime(2026, 11, 20, tzinfo=timezone.utc))
    assert created == ["dify_logs_2026_12", "dify_logs_2027_01", "error_2026_12", "error_2027_01"]

    # Writing still works, duplicates included, and rows of an unplanned month land in
    # the DEFAULT partition instead of failing.
    exporter = PostgresSpanExporter(StoreSettings(database_url=url), SpoolSettings(enabled=False))
    spans = chat_spans(30, exception_every=3)
    assert exporter.export(spans).name == "SUCCESS"
    assert exporter.export(spans).name == "SUCCESS"
    exporter.shutdown()
    far, _ = chat_span(999, datetime(2031, 5, 5, tzinfo=timezone.utc))
    RecordWriter(engine).write([far])
    total = len(before["dify_logs"]) + 30 + 1
    assert count_rows(url, "dify_logs") == total

    cutoff = datetime(2026, 10, 15, tzinfo=timezone.utc)
    result = retention.apply(engine, "dify_logs", cutoff, batch_rows=2)
    assert result.dropped_partitions == ["dify_logs_2026_08", "dify_logs_2026_09"]
    assert result.changed == sum(m < cutoff for m in moments)
    assert count_rows(url, "dify_logs") == total - result.changed
    with engine.connect() as connection:
        left = [p.name for p in partitions.partitions(connection, "dify_logs")]
    assert left[0] == "dify_logs_2026_10"

    app = create_app(ApiSettings(database_url=url, admin_api_keys=(ADMIN_KEY,)))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        listing = client.get("/console/api/admin/chat-logs", params={"per_page": 5}).json()
        stats = client.get("/console/api/admin/log-stats").json()
    state_of(app).engine.dispose()
    assert listing["total"] == total - result.changed
    assert stats["totals"]["chats"] >= 30
    engine.dispose()


# -- exports ------------------------------------------------------------------------------


@pytest.fixture
def api(store):
    url, _engine, _chats, _errors = store
    app = create_app(ApiSettings(database_url=url, admin_api_keys=(ADMIN_KEY,)))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client
    state_of(app).engine.dispose()


def test_chat_log_export_as_csv_with_filters(api, store):
    _url, _engine, chats, _ = store
    response = api.get(
        "/console/api/admin/chat-logs/export", params={"format": "csv", "user_id": "user-2"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    expected = sorted(
        (c for c in chats if c.user_id == "user-2"), key=lambda c: (c.created_at, c.id)
    )
    assert [r["id"] for r in rows] == [c.id for c in expected]
    assert rows[0]["input_text"] == expected[0].input_text
    assert float(rows[0]["latency_ms"]) == expected[0].latency_ms
    assert json.loads(rows[0]["attributes"]) == {}
    assert list(rows[0]) == [
        c.name for c in __import__("chatspan.store.tables", fromlist=["x"]).dify_logs.columns
    ]


def test_error_log_export_as_json_lines(api, store):
    _url, _engine, _chats, errors = store
    response = api.get(
        "/console/api/admin/error-logs/export",
        params={"format": "jsonl", "type_error": "ValueError"},
    )
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["id"] for line in lines] == [
        e.id
        for e in sorted(
            (e for e in errors if e.type_error == "ValueError"), key=lambda e: (e.created_at, e.id)
        )
    ]
    assert set(lines[0]) >= {"type_error", "error_message", "stacktrace", "fingerprint", "trace_id"}


def test_exports_need_an_admin_key_and_a_known_format(api):
    assert (
        api.get("/console/api/admin/chat-logs/export", headers={"Authorization": ""}).status_code
        == 401
    )
    assert (
        api.get("/console/api/admin/chat-logs/export", params={"format": "xml"}).status_code == 422
    )


def test_an_export_of_many_rows_streams_in_constant_memory(postgres_database):
    engine = make_engine(postgres_database, timeout_s=120)
    with engine.begin() as connection:
        connection.exec_driver_sql('TRUNCATE dify_logs, "error"')
    writer = RecordWriter(engine)
    for start in range(0, 60_000, 5_000):
        writer.write(
            chat_span(i, BASE + timedelta(seconds=i))[0] for i in range(start, start + 5_000)
        )
    lines = 0

    def count(chunk: str) -> None:
        nonlocal lines
        lines += chunk.count("\n")

    growth = peak_growth(ExportLines(engine, ChatFilters(Window()), "jsonl"), 3, count)
    engine.dispose()
    assert lines == 60_000
    assert growth < 8 * 1024 * 1024, f"memory grew by {growth} bytes"


def test_the_export_command_writes_what_the_api_serves(api, store, tmp_path):
    url, _engine, _chats, errors = store
    out = tmp_path / "errors.csv"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "chatspan"),
            "export",
            "--table",
            "error",
            "--format",
            "csv",
            "--since",
            "2026-11-03",
            "--output",
            str(out),
        ],
        env=clean_env(CHATSPAN_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    served = api.get(
        "/console/api/admin/error-logs/export", params={"since": "2026-11-03T00:00:00Z"}
    ).text
    assert out.read_bytes().decode() == served  # byte for byte: CSV lines end in CRLF
    since = datetime(2026, 11, 3, tzinfo=timezone.utc)
    expected = [e for e in errors if e.created_at >= since]
    assert 0 < len(expected) < len(errors)  # the filter keeps some, and drops some
    assert len(list(csv.DictReader(io.StringIO(served)))) == len(expected)
