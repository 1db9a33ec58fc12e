"""chatspan_supabase against the PostgREST stand-in (tests/postgrest_fake.py), which
runs every request as the key's role on real PostgreSQL with Supabase's roles."""

from __future__ import annotations

import json
import logging
import statistics
import time

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from chatspan.config import ConfigError, SpoolSettings, SupabaseSettings
from chatspan.exporters.supabase import SupabaseSpanExporter

from pgdb import libpq_dsn, scratch_database
from postgrest_fake import ANON_KEY, SECRET_KEY, SERVICE_KEY, running
from servers import APP_KEY, clean_env, free_port, run_app
from spans import SpanRecorder, chat_spans
from supabase_platform import apply_migration, install_platform


@pytest.fixture(scope="module")
def supabase_dsn(postgres_server):
    with scratch_database(postgres_server, "supa") as url:
        dsn = libpq_dsn(url)
        install_platform(dsn)
        apply_migration(dsn)
        yield dsn


@pytest.fixture
def fake(supabase_dsn):
    with psycopg.connect(supabase_dsn, autocommit=True) as connection:
        connection.execute("truncate public.error, public.dify_logs")
    with running(supabase_dsn, free_port()) as (url, faults, calls):
        yield url, faults, calls


def _exporter(url: str, key: str = SERVICE_KEY, **overrides) -> SupabaseSpanExporter:
    """An exporter without a spool: what Supabase does is what export() says."""
    settings = SupabaseSettings(url=url, service_key=key, request_timeout_s=2, export_timeout_s=20)
    return SupabaseSpanExporter(
        settings.__class__(**{**settings.__dict__, **overrides}), SpoolSettings(enabled=False)
    )


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as connection:
        return connection.execute(f"select count(*) from public.{table}").fetchone()[0]


def _distinct(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "select count(*), count(distinct id) from public.error"
        ).fetchone()


def test_errors_arrive_once_however_often_they_are_sent(fake, supabase_dsn):
    url, _faults, calls = fake
    spans = chat_spans(300, exception_every=3)
    exporter = _exporter(url)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert _distinct(supabase_dsn) == (100, 100)
    assert _count(supabase_dsn, "dify_logs") == 0  # chats only when asked
    request = calls.requests[0]
    assert request["headers"]["prefer"] == "return=minimal,resolution=ignore-duplicates"
    assert request["headers"]["apikey"] == SERVICE_KEY
    assert request["headers"]["authorization"] == f"Bearer {SERVICE_KEY}"
    rows = json.loads(request["body"])
    assert len({frozenset(row) for row in rows}) == 1  # uniform keys
    with psycopg.connect(supabase_dsn) as connection:
        message, user = connection.execute(
            "select error_message, user_id from public.error order by created_at limit 1"
        ).fetchone()
    assert message == "model returned no choices for message 0"
    assert user == "user-0"


def test_chats_too_and_the_new_secret_key(fake, supabase_dsn):
    url, _faults, calls = fake
    exporter = _exporter(url, SECRET_KEY, tables=("error", "dify_logs"))
    assert exporter.export(chat_spans(40, exception_every=4)) is SpanExportResult.SUCCESS
    assert (_count(supabase_dsn, "dify_logs"), _count(supabase_dsn, "error")) == (40, 10)
    assert all("authorization" not in call["headers"] for call in calls.requests)


def test_throttling_failures_and_timeouts_are_retried_until_every_row_is_stored(fake, supabase_dsn):
    url, faults, calls = fake
    faults.hang_s = 5
    faults.retry_after = "0.2"
    faults.planned = [429, 503, "hang", 502, 429, 500]
    exporter = _exporter(url, request_timeout_s=1, batch_rows=40)
    spans = chat_spans(400, exception_every=2)
    for start in range(0, 400, 100):
        assert exporter.export(spans[start : start + 100]) is SpanExportResult.SUCCESS
    assert _distinct(supabase_dsn) == (200, 200)
    bodies_by_try = [c["body"] for c in calls.requests[:7]]
    assert len(set(bodies_by_try)) == 1, "a retry sends the same body"


def test_retry_after_is_honoured(fake):
    url, faults, calls = fake
    faults.retry_after = "1"
    faults.planned = [429]
    exporter = _exporter(url)
    assert exporter.export(chat_spans(2, exception_every=1)) is SpanExportResult.SUCCESS
    first, second = calls.requests[:2]
    assert second["at"] - first["at"] >= 0.95


def test_an_unknown_column_is_refused_once_not_retried_and_logged_once(postgres_server, caplog):
    with scratch_database(postgres_server, "supaold") as db_url:
        dsn = libpq_dsn(db_url)
        install_platform(dsn)
        apply_migration(dsn)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("alter table public.error drop column node_type")
        with running(dsn, free_port()) as (url, _faults, calls):
            exporter = _exporter(url)
            with caplog.at_level(logging.DEBUG, logger="chatspan"):
                first = exporter.export(chat_spans(4, exception_every=1))
                second = exporter.export(chat_spans(4, exception_every=1))
            assert (first, second) == (SpanExportResult.FAILURE, SpanExportResult.FAILURE)
            assert len(calls.requests) == 2  # one per export: no retry
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "PGRST204" in errors[0].getMessage()
    assert "node_type" in errors[0].getMessage()
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_a_wrong_key_is_refused_without_the_key_in_any_log(fake, caplog):
    url, _faults, calls = fake
    exporter = _exporter(url, SERVICE_KEY[:-4] + "abcd")
    with caplog.at_level(logging.DEBUG):
        assert exporter.export(chat_spans(2, exception_every=1)) is SpanExportResult.FAILURE
    assert len(calls.requests) == 1
    assert "HTTP 401" in caplog.text
    assert SERVICE_KEY[:-4] not in caplog.text


def test_a_hanging_supabase_costs_an_export_its_time_bound_and_no_more(fake, caplog):
    url, faults, _calls = fake
    faults.hang_s = 60
    faults.until = time.monotonic() + 60
    faults.during = "hang"
    exporter = _exporter(url, request_timeout_s=1, export_timeout_s=3)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        result = exporter.export(chat_spans(2, exception_every=1))
    took = time.monotonic() - started
    faults.until = 0
    assert result is SpanExportResult.FAILURE
    # Within its 3 s bound (a request in flight at the deadline is cut to what is left).
    assert 2.5 <= took < 5, took
    assert SERVICE_KEY not in caplog.text


def test_the_exporters_own_requests_are_not_traced(fake):
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    url, _faults, _calls = fake
    recorder = SpanRecorder()
    HTTPXClientInstrumentor().instrument(tracer_provider=recorder.provider)
    try:
        exporter = _exporter(url)
        assert exporter.export(chat_spans(3, exception_every=1)) is SpanExportResult.SUCCESS
        exporter.shutdown()
        exported_spans = recorder.spans()
        httpx.get(f"{url}/rest/v1/")  # the same client library, outside the exporter
    finally:
        HTTPXClientInstrumentor().uninstrument()
    assert exported_spans == []
    assert recorder.spans(), "the instrumentation traces other requests: the check means something"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SUPABASE_URL is not set"),
        ({"SUPABASE_URL": "db.example.org"}, "SUPABASE_URL must be your project's URL"),
        ({"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_SERVICE_ROLE_KEY is not set"),
        (
            {"SUPABASE_URL": "https://x.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": ANON_KEY},
            "anon key",
        ),
        (
            {
                "SUPABASE_URL": "https://x.supabase.co",
                "SUPABASE_SERVICE_ROLE_KEY": "sb_publishable_" + "p" * 20,
            },
            "publishable",
        ),
        (
            {
                "SUPABASE_URL": "https://x.supabase.co",
                "SUPABASE_SERVICE_ROLE_KEY": "hunter2-is-not-a-key",
            },
            "neither a service_role JWT",
        ),
        (
            {
                "SUPABASE_URL": "https://x.supabase.co",
                "SUPABASE_SERVICE_ROLE_KEY": SECRET_KEY,
                "CHATSPAN_SUPABASE_TABLES": "error,chats",
            },
            "CHATSPAN_SUPABASE_TABLES",
        ),
    ],
)
def test_bad_settings_name_the_variable_and_never_the_key(env, message):
    with pytest.raises(ConfigError, match=message) as raised:
        SupabaseSettings.from_env(env)
    text = str(raised.value)
    for value in env.values():
        if "key" in value or value.startswith(("eyJ", "sb_", "hunter")):
            assert value not in text
    assert SECRET_KEY not in repr(SupabaseSettings("https://x", SECRET_KEY))


def _latencies(base_url: str, count: int) -> list[float]:
    timings = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {APP_KEY}"}) as client:
        for i in range(count):
            started = time.perf_counter()
            response = client.post(
                "/v1/chat-messages",
                json={
                    "inputs": {},
                    "query": f"q {i} [stream-error]",
                    "user": "lat",
                    "response_mode": "streaming",
                },
            )
            assert response.status_code == 200
            timings.append(time.perf_counter() - started)
    return timings


@pytest.mark.slow
def test_requests_never_wait_for_a_hung_supabase(fake, tmp_path):
    url, faults, calls = fake
    env = clean_env(
        OTEL_TRACES_EXPORTER="chatspan_supabase",
        SUPABASE_URL=url,
        SUPABASE_SERVICE_ROLE_KEY=SERVICE_KEY,
        CHATSPAN_SUPABASE_REQUEST_TIMEOUT_S="30",
        CHATSPAN_SUPABASE_EXPORT_TIMEOUT_S="60",
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="8",
    )
    with run_app("gunicorn", tmp_path, env) as app:
        _latencies(app.base_url, 10)  # warm up
        healthy = _latencies(app.base_url, 60)
        faults.hang_s = 120
        faults.during = "hang"
        hang_started = time.monotonic()
        faults.until = hang_started + 120
        hanging = _latencies(app.base_url, 60)
        assert any(call["at"] >= hang_started for call in calls.requests), "the exporter never hung"
        faults.until = 0
        log = app.log()
    # A request that waited for the hung Supabase would take its 30 s request timeout.
    before, during = statistics.median(healthy), statistics.median(hanging)
    assert max(hanging) < 5 and during < 10 * before + 0.05, (
        f"median {before * 1000:.1f} ms -> {during * 1000:.1f} ms, slowest {max(hanging):.2f} s"
    )
    assert SERVICE_KEY not in log
