"""chatspan.log_chat / log_error: rows carry exactly the values given."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import chatspan
from chatspan import manual
from chatspan.config import StoreSettings
from chatspan.exporters.postgres import PostgresSpanExporter

from rows import fetch_rows


@pytest.fixture
def provider(database_url, monkeypatch):
    """A tracer provider exporting to the store, installed where the manual API looks."""
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(PostgresSpanExporter(StoreSettings(database_url=database_url)))
    )
    monkeypatch.setattr(manual, "_tracer", provider.get_tracer("chatspan"))
    yield provider
    provider.shutdown()


def test_log_chat_row_carries_exactly_the_values_given(database_url, provider):
    chatspan.log_chat(
        "support-bot",
        "conv-42",
        "alice",
        "Where is my order?",
        "It ships tomorrow.",
        1234.5,
        model="gpt-4o",
        provider="openai",
        input_tokens=7,
        output_tokens=5,
        message_id="msg-1",
        **{"channel": "web"},
    )
    (row,) = fetch_rows(database_url, "dify_logs")
    assert row["app_id"] == "support-bot"
    assert row["conversation_id"] == "conv-42"
    assert row["user_id"] == "alice"
    assert row["input_text"] == "Where is my order?"
    assert row["output_text"] == "It ships tomorrow."
    assert row["latency_ms"] == 1234.5
    assert (row["model"], row["provider"], row["message_id"]) == ("gpt-4o", "openai", "msg-1")
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (7, 5, 12)
    assert row["status"] == "ok"
    assert row["attributes"]["channel"] == "web"


def test_log_chat_without_latency_stores_the_span_duration(database_url, provider):
    chatspan.log_chat("app", None, "bob", "q", "a")
    (row,) = fetch_rows(database_url, "dify_logs")
    assert row["conversation_id"] is None
    assert 0 <= row["latency_ms"] < 1000


def test_log_error_row_carries_exactly_the_values_given(database_url, provider):
    try:
        {}["missing"]
    except KeyError as exc:
        chatspan.log_error(
            "RetrieverError",
            "index 'faq' not found",
            user_id="carol",
            node="knowledge",
            exc=exc,
            **{"dify.app_id": "kb-app"},
        )
    chatspan.log_error("QuotaExceeded", "monthly token quota reached")
    first, second = fetch_rows(database_url, "error")
    assert first["type_error"] == "RetrieverError"
    assert first["error_message"] == "index 'faq' not found"
    assert first["user_id"] == "carol"
    assert first["node"] == "knowledge"
    assert first["app_id"] == "kb-app"
    assert "KeyError" in first["stacktrace"]
    assert second["type_error"] == "QuotaExceeded"
    assert second["user_id"] is None and second["stacktrace"] is None
    assert fetch_rows(database_url, "dify_logs") == []


def test_without_a_tracer_provider_it_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(manual, "_warned_no_provider", False)
    chatspan.log_chat("a", "c", "u", "q", "a")
    chatspan.log_error("E", "m")
    warnings = [r for r in caplog.records if "no OpenTelemetry tracer provider" in r.getMessage()]
    assert len(warnings) == 1
