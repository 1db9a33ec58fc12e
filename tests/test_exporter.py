"""chatspan_postgres through a real TracerProvider and BatchSpanProcessor, on PostgreSQL
(psycopg 3 and psycopg2) and SQLite."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExportResult,
)
from sqlalchemy import text
from sqlalchemy.engine import make_url

from chatspan import semconv as sc
from chatspan.config import ConfigError, SpoolSettings, StoreSettings
from chatspan.exporters.delivery import LazilyRead
from chatspan.exporters.postgres import PostgresSpanExporter
from chatspan.store.engine import make_engine, resolve_url
from chatspan.store.migrate import HEAD_REVISION, current_revision

from pgdb import libpq_dsn
from rows import comparable_rows, count_rows, fetch_rows
from servers import wait_for
from spans import ANSWER, QUESTION, SpanRecorder, chat_spans, make_chat_span
from statements import StatementLog


def _exporter(url: str, timeout_s: float = 10) -> PostgresSpanExporter:
    """An exporter without a spool: what the database does is what export() says."""
    return PostgresSpanExporter(
        StoreSettings(database_url=url, export_timeout_s=timeout_s), SpoolSettings(enabled=False)
    )


def test_thousand_chats_and_two_hundred_errors_through_batch_processor(any_driver_url):
    provider = TracerProvider(resource=Resource.create({"service.name": "dify-api"}))
    provider.add_span_processor(BatchSpanProcessor(_exporter(any_driver_url)))
    tracer = provider.get_tracer("test")
    for i in range(1000):
        make_chat_span(tracer, i, with_exception=i % 5 == 0)
    for i in range(50):  # plain spans, no exception: they add nothing
        with tracer.start_as_current_span(f"GET /static/{i}"):
            pass
    provider.shutdown()

    chats = fetch_rows(any_driver_url, "dify_logs")
    errors = fetch_rows(any_driver_url, "error")
    assert len(chats) == 1000
    assert len(errors) == 200
    by_message = {row["message_id"]: row for row in chats}
    row = by_message["msg-123"]
    assert row["app_id"] == "app-4"
    assert row["conversation_id"] == "conv-26"
    assert row["user_id"] == "user-23"
    assert row["input_text"] == f"{QUESTION} #123"
    assert row["output_text"] == f"{ANSWER} #123"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (43, 123, 166)
    assert row["model"] == "gpt-4o-mini" and row["provider"] == "openai"
    assert row["response_mode"] == "streaming"
    assert row["status"] == "ok"
    assert row["service_name"] == "dify-api"
    assert row["attributes"] == {"dify.workflow_run_id": "run-123"}
    assert len(row["trace_id"]) == 32 and len(row["span_id"]) == 16
    assert row["created_at"].tzinfo is not None or any_driver_url.startswith("sqlite")
    assert by_message["msg-10"]["status"] == "error"
    error = next(
        e for e in errors if e["error_message"] == "model returned no choices for message 10"
    )
    assert error["type_error"] == "ValueError"
    assert error["user_id"] == "user-10" and error["app_id"] == "app-3"
    assert error["trace_id"] == by_message["msg-10"]["trace_id"]
    assert "raise ValueError" in error["stacktrace"]
    # The same error from 200 different messages is one group.
    assert len({e["fingerprint"] for e in errors}) == 1


def test_exporting_the_same_batch_twice_adds_no_rows(any_driver_url):
    spans = chat_spans(300, exception_every=3)
    exporter = _exporter(any_driver_url)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans) is SpanExportResult.SUCCESS  # a retry of the whole batch
    assert exporter.export(spans[100:200]) is SpanExportResult.SUCCESS  # an overlapping one
    exporter.shutdown()
    assert count_rows(any_driver_url, "dify_logs") == 300
    assert count_rows(any_driver_url, "error") == 100


def test_a_batch_mixing_new_and_stored_spans_stores_the_new_ones(database_url):
    spans = chat_spans(20, exception_every=1)
    exporter = _exporter(database_url)
    exporter.export(spans[:10])
    exporter.export(spans)
    exporter.shutdown()
    assert count_rows(database_url, "dify_logs") == 20
    assert count_rows(database_url, "error") == 20


def _spelled(url: str, scheme: str) -> str:
    """The same database, with the URL scheme an operator might write."""
    return make_url(url).set(drivername=scheme).render_as_string(hide_password=False)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_every_postgres_spelling_copies_the_rows_in(inserting_statements: StatementLog, scheme):
    # Dify installs psycopg2, and for a URL naming no driver SQLAlchemy would pick it.
    assert importlib.util.find_spec("psycopg2"), "without psycopg2 this test proves nothing"
    url = _spelled(inserting_statements.url, scheme)
    exporter = _exporter(url)
    assert exporter.export(chat_spans(40, exception_every=4)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert count_rows(url, "dify_logs") == 40
    assert count_rows(url, "error") == 10
    assert inserting_statements.statements() == [("dify_logs", "COPY"), ("error", "COPY")]


def test_an_explicit_psycopg2_url_is_honoured(inserting_statements: StatementLog):
    """The slower road, kept for whoever asks for it; and the control that shows the
    statement log tells COPY from INSERT."""
    url = _spelled(inserting_statements.url, "postgresql+psycopg2")
    exporter = _exporter(url)
    assert exporter.export(chat_spans(40, exception_every=4)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert count_rows(url, "dify_logs") == 40
    # psycopg2 sends one INSERT per row.
    assert set(inserting_statements.statements()) == {("dify_logs", "INSERT"), ("error", "INSERT")}


def test_only_a_retried_batch_is_merged(inserting_statements: StatementLog):
    url = inserting_statements.url
    spans = chat_spans(30, exception_every=3)
    exporter = _exporter(url)
    assert exporter.export(spans[:20]) is SpanExportResult.SUCCESS  # new: COPY
    assert exporter.export(spans) is SpanExportResult.SUCCESS  # a retry, with 10 new: merged
    assert exporter.export(chat_spans(5)) is SpanExportResult.SUCCESS  # new again: COPY
    exporter.shutdown()
    assert count_rows(url, "dify_logs") == 35
    assert count_rows(url, "error") == 10
    # The retry's COPY failed on the first stored id and left nothing (not even a log row).
    assert inserting_statements.statements() == [
        ("dify_logs", "COPY"),
        ("error", "COPY"),
        ("dify_logs", "INSERT"),
        ("error", "INSERT"),
        ("dify_logs", "COPY"),
    ]


def _odd_spans() -> list:
    """Chats and errors with the values that differ between COPY and INSERT if anything does."""
    recorder = SpanRecorder()
    for i in range(5):
        make_chat_span(recorder.tracer, i, with_exception=i % 2 == 0)
    with recorder.tracer.start_as_current_span(
        "odd",
        attributes={
            sc.CHATSPAN_KIND: "chat",
            sc.INPUT_VALUE: "tab\tnewline\nbackslash\\ and \\N, héllo 世界 🎉",
            sc.OUTPUT_VALUE: "\\N",  # text COPY's NULL marker, as text
            sc.USER_ID: "ü" * 600,  # capped
            sc.GEN_AI_USAGE_INPUT_TOKENS: 2**63 - 1,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: -5,
            sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 0.1 + 0.2,
            sc.CHATSPAN_LATENCY_MS: 1e-300,
            "ratio": 1.7976931348623157e308,
            "big": 2**80,
            "nested": ["ü", 1, 2.5, True],
            "ключ": "значение\u2028",
            "empty": "",
        },
    ):
        pass
    return recorder.spans()


def test_copy_and_insert_store_the_same_rows(inserting_statements: StatementLog):
    spans = _odd_spans()
    stored = {}
    for scheme, statement in [("postgresql", "COPY"), ("postgresql+psycopg2", "INSERT")]:
        url = _spelled(inserting_statements.url, scheme)
        exporter = _exporter(url)
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter.shutdown()
        assert {verb for _table, verb in inserting_statements.statements()} == {statement}
        stored[statement] = {t: comparable_rows(url, t) for t in ("dify_logs", "error")}
        engine = make_engine(url, timeout_s=10)
        with engine.begin() as connection:
            connection.execute(text('TRUNCATE dify_logs, "error"'))
        engine.dispose()
        inserting_statements.clear()
    assert len(stored["COPY"]["dify_logs"]) == 6 and len(stored["COPY"]["error"]) == 3
    assert stored["COPY"] == stored["INSERT"]
    (odd,) = [row for row in stored["COPY"]["dify_logs"] if row["attributes"].get("ratio")]
    assert odd["output_text"] == "\\N" and odd["input_tokens"] == 2**63 - 1
    assert math.isclose(odd["time_to_first_token_ms"], 300.0)


def test_a_batch_is_read_from_its_spans_once_and_whole():
    spans = chat_spans(5)
    batch = LazilyRead(spans)
    first = next(iter(batch))  # a writer that stopped after one span
    read = list(batch)  # then the spool, taking the whole batch
    assert [data.span_id for data in read] == [span.context.span_id for span in spans]
    assert read[0] is first and list(batch)[4] is read[4]  # each span read once
    assert len(batch) == 5 and batch[-1] is read[4]


@pytest.fixture
def store_dropping_connections(postgres_database: str) -> Iterator[str]:
    """The store, whose server drops the connection while storing user 'drop-me'."""
    url = postgres_database
    with psycopg.connect(libpq_dsn(url), autocommit=True) as connection:
        connection.execute('TRUNCATE dify_logs, "error"')
        connection.execute(
            "CREATE FUNCTION drop_connection() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.user_id = 'drop-me' THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
            "END IF; RETURN NEW; END $$"
        )
        connection.execute(
            "CREATE TRIGGER drop_connection BEFORE INSERT ON dify_logs "
            "FOR EACH ROW EXECUTE FUNCTION drop_connection()"
        )
        yield url
        connection.execute("DROP TRIGGER IF EXISTS drop_connection ON dify_logs")
        connection.execute("DROP FUNCTION drop_connection()")


def test_a_connection_lost_mid_copy_keeps_the_whole_batch_for_later(
    store_dropping_connections: str, spool_directory
):
    url = store_dropping_connections
    recorder = SpanRecorder()
    for i in range(20):
        make_chat_span(recorder.tracer, i, with_exception=i % 4 == 0)
        if i == 10:
            with recorder.tracer.start_as_current_span(
                "chat", attributes={sc.CHATSPAN_KIND: "chat", sc.USER_ID: "drop-me"}
            ):
                pass
    exporter = PostgresSpanExporter(
        StoreSettings(database_url=url, export_timeout_s=10),
        SpoolSettings(directory=spool_directory),
    )
    assert exporter.export(recorder.spans()) is SpanExportResult.SUCCESS  # kept on disk
    assert exporter.spool.pending() == 1
    assert count_rows(url, "dify_logs") == 0  # nothing of the batch half-stored
    with psycopg.connect(libpq_dsn(url), autocommit=True) as connection:
        connection.execute("DROP TRIGGER drop_connection ON dify_logs")
    wait_for(lambda: count_rows(url, "dify_logs") == 21, timeout=60, what="the replay")
    assert count_rows(url, "error") == 5
    exporter.shutdown()


@pytest.fixture
def store_refusing_user(database_url: str) -> Iterator[str]:
    """The store, with a rule the database enforces: user_id 'reject-me' is refused."""
    engine = make_engine(database_url, timeout_s=10)
    if engine.dialect.name == "postgresql":
        add = "ALTER TABLE dify_logs ADD CONSTRAINT refuse CHECK (user_id <> 'reject-me')"
        drop = "ALTER TABLE dify_logs DROP CONSTRAINT refuse"
    else:
        add = (
            "CREATE TRIGGER refuse BEFORE INSERT ON dify_logs WHEN NEW.user_id = 'reject-me' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        drop = "DROP TRIGGER refuse"
    with engine.begin() as connection:
        connection.execute(text(add))
    yield database_url
    with engine.begin() as connection:
        connection.execute(text(drop))
    engine.dispose()


def test_a_row_the_database_rejects_costs_only_itself(store_refusing_user, caplog):
    recorder = SpanRecorder()
    tracer = recorder.tracer
    for i in range(5):
        make_chat_span(tracer, i, with_exception=True)
    with tracer.start_as_current_span(
        "bad", attributes={sc.CHATSPAN_KIND: "chat", sc.USER_ID: "reject-me"}
    ):
        pass
    exporter = _exporter(store_refusing_user)
    with caplog.at_level(logging.WARNING, logger="chatspan"):
        result = exporter.export(recorder.spans())
    exporter.shutdown()
    assert result is SpanExportResult.SUCCESS
    assert count_rows(store_refusing_user, "dify_logs") == 5
    assert count_rows(store_refusing_user, "error") == 5
    rejected = [
        r.getMessage() for r in caplog.records if "rejected a dify_logs row" in r.getMessage()
    ]
    assert len(rejected) == 1
    assert "reject-me" not in rejected[0]  # row content never reaches a log line


def test_text_no_database_could_store_is_repaired_not_lost(database_url):
    recorder = SpanRecorder()
    with recorder.tracer.start_as_current_span(
        "odd",
        attributes={
            sc.CHATSPAN_KIND: "chat",
            sc.INPUT_VALUE: "lone \ud800 surrogate",
            sc.OUTPUT_VALUE: "nul \x00 byte",
            "note": "\x00\udfff",
        },
    ):
        pass
    exporter = _exporter(database_url)
    assert exporter.export(recorder.spans()) is SpanExportResult.SUCCESS
    exporter.shutdown()
    (row,) = fetch_rows(database_url, "dify_logs")
    assert row["input_text"] == "lone ? surrogate"
    assert row["output_text"] == "nul  byte"
    assert row["attributes"] == {"note": "?"}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a hung database."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    yield port
    server.close()


def test_unreachable_database_fails_in_bounded_time_without_raising_or_blocking(
    silent_server, caplog
):
    url = f"postgresql+psycopg://chatspan:s3cret-pw@127.0.0.1:{silent_server}/test"
    exporter = _exporter(url, timeout_s=2)
    provider = TracerProvider()
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=50)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")

    started = time.monotonic()
    for i in range(20):
        make_chat_span(tracer, i)
    ending_spans_took = time.monotonic() - started
    # Waiting for the silent database would take its 2 s timeout, at least.
    assert ending_spans_took < 1.5, "ending spans must not wait for the database"

    caplog.clear()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="chatspan"):
        result = exporter.export(chat_spans(1))
    took = time.monotonic() - started
    assert result is SpanExportResult.FAILURE
    assert took < 8, f"export took {took:.1f} s with a 2 s timeout"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("chatspan")]
    assert len(lines) == 1
    assert "s3cret-pw" not in lines[0] and QUESTION[:20] not in lines[0]
    assert f"127.0.0.1:{silent_server}" in lines[0]
    provider.shutdown()


def test_refused_connection_fails_fast_and_names_the_cause(caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = _exporter(
        f"postgresql+psycopg2://postgres:pw-xyz@127.0.0.1:{port}/test", timeout_s=2
    )
    spans = chat_spans(1)
    with caplog.at_level(logging.ERROR, logger="chatspan"):
        assert exporter.export(spans) is SpanExportResult.FAILURE
    (line,) = [r.getMessage() for r in caplog.records if r.name.startswith("chatspan")]
    assert "refused" in line.lower()
    assert "pw-xyz" not in line


def test_locked_sqlite_database_fails_within_the_timeout(tmp_path):
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    exporter = _exporter(url, timeout_s=1)
    spans = chat_spans(1)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    locker = sqlite3.connect(path)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result = exporter.export(spans)
        took = time.monotonic() - started
    finally:
        locker.rollback()
        locker.close()
    assert result is SpanExportResult.FAILURE
    assert took < 5


def test_export_after_shutdown_fails_quietly(database_url):
    exporter = _exporter(database_url)
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url at all", "CHATSPAN_DATABASE_URL is not a database URL"),
        ("mysql://root@localhost/db", "names the database 'mysql'"),
        ("postgresql+asyncpg://u@h/db", "driver 'asyncpg'"),
        ("postgresql+pg8000://u@h/db", "driver 'pg8000'"),
        ("sqlite+aiosqlite:///x.db", "CHATSPAN_DATABASE_URL"),
    ],
)
def test_bad_database_url_fails_at_start_naming_the_variable(monkeypatch, url, expected):
    monkeypatch.setenv("CHATSPAN_DATABASE_URL", url)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")) as raised:
        PostgresSpanExporter()
    assert "CHATSPAN_DATABASE_URL" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:pw@h/db", "postgresql+psycopg"),
        ("postgres://u:pw@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg2://u:pw@h/db", "postgresql+psycopg2"),
        ("postgres+psycopg2://u:pw@h/db", "postgresql+psycopg2"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_database_url_spellings_pick_their_driver(url, driver):
    resolved = resolve_url(url)
    assert resolved.drivername == driver
    assert (resolved.host, resolved.password, resolved.database) == (
        make_url(url).host,
        make_url(url).password,
        make_url(url).database,
    )


def test_malformed_url_with_a_password_does_not_echo_it(monkeypatch):
    monkeypatch.setenv("CHATSPAN_DATABASE_URL", "postgresql://user:topsecret@host:notaport/db")
    with pytest.raises(ConfigError) as raised:
        PostgresSpanExporter()
    assert "topsecret" not in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CHATSPAN_EXPORT_TIMEOUT_S", "soon"),
        ("CHATSPAN_EXPORT_TIMEOUT_S", "-1"),
        ("CHATSPAN_AUTO_MIGRATE", "maybe"),
    ],
)
def test_bad_settings_name_their_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        PostgresSpanExporter()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path) -> str:
    """A database without chatspan's tables."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'chatspan.db'}"
    return request.getfixturevalue("empty_postgres_database")


# One export in a fresh interpreter: its stored rows, and whether Alembic was loaded.
EXPORT_IN_A_FRESH_PROCESS = """
import json, sys
sys.path.insert(0, sys.argv[2])
from spans import chat_spans
from chatspan.config import SpoolSettings, StoreSettings
from chatspan.exporters.postgres import PostgresSpanExporter

exporter = PostgresSpanExporter(
    StoreSettings(database_url=sys.argv[1], export_timeout_s=10), SpoolSettings(enabled=False)
)
result = exporter.export(chat_spans(2))
exporter.shutdown()
alembic = sorted(name for name in sys.modules if name.split(".")[0] == "alembic")
print(json.dumps({"result": result.name, "alembic_modules": alembic}))
"""


def _export_in_a_fresh_process(url: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", EXPORT_IN_A_FRESH_PROCESS, url, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_exporter_on_an_up_to_date_database_does_not_run_alembic(database_url):
    """The first export checks the schema with one query; Alembic (a second of CPU under
    the app's GIL) is not even imported."""
    outcome = _export_in_a_fresh_process(database_url)
    assert outcome == {"result": "SUCCESS", "alembic_modules": []}
    assert count_rows(database_url, "dify_logs") == 2


def test_an_exporter_on_an_empty_database_creates_the_tables(empty_database_url):
    outcome = _export_in_a_fresh_process(empty_database_url)
    assert outcome["result"] == "SUCCESS"
    assert "alembic.command" in outcome["alembic_modules"]  # the control: it migrated
    assert count_rows(empty_database_url, "dify_logs") == 2
    engine = make_engine(empty_database_url, timeout_s=10)
    assert current_revision(engine) == HEAD_REVISION
    engine.dispose()


def test_concurrent_exporters_do_not_collide(database_url):
    """Two processes' worth of exporters writing overlapping batches at once."""
    spans = chat_spans(400, exception_every=4)
    exporters = [_exporter(database_url), _exporter(database_url)]
    results: list[SpanExportResult] = []

    def run(exporter: PostgresSpanExporter) -> None:
        for start in range(0, 400, 50):
            results.append(exporter.export(spans[start : start + 50]))

    threads = [threading.Thread(target=run, args=(e,)) for e in exporters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(SpanExportResult.SUCCESS) == 16
    assert count_rows(database_url, "dify_logs") == 400
    assert count_rows(database_url, "error") == 100


def test_the_exporters_own_database_calls_are_not_traced(postgres_database):
    """With psycopg instrumented, exporting must not make spans (which would be
    exported in turn, without end)."""
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    recorder = SpanRecorder()
    PsycopgInstrumentor().instrument(tracer_provider=recorder.provider, skip_dep_check=True)
    try:
        exporter = _exporter(postgres_database)
        assert exporter.export(chat_spans(3, exception_every=2)) is SpanExportResult.SUCCESS
        exporter.shutdown()
        exported_spans = recorder.spans()
        control = make_engine(postgres_database, timeout_s=10)  # the driver, outside the exporter
        with control.connect() as connection:
            connection.execute(text("SELECT 1"))
        control.dispose()
    finally:
        PsycopgInstrumentor().uninstrument()
    assert exported_spans == []
    assert recorder.spans(), "the instrumentation traces other queries: the check means something"
