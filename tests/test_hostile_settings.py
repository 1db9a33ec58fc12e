"""Settings an operator gets wrong: a typo in one chat setting leaves every other chat
recorded and is named loudly; a retention age means what it says, and a big delete is
confirmed first."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask import Flask

from chatspan import semconv as sc
from chatspan.instrumentation import ChatInstrumentor
from chatspan.records import SpanData
from chatspan.store.engine import make_engine
from chatspan.store.writer import RecordWriter

from rows import count_rows
from servers import clean_env
from spans import SpanRecorder

GOOD_ROUTE = {"path": "/api/ask", "query": "question", "answer": "reply"}


def _typo_app() -> Flask:
    app = Flask("typos")

    @app.post("/v1/chat-messages")
    def dify_chat():
        return {"answer": "hello", "conversation_id": "c-1", "message_id": "m-1"}

    @app.post("/api/ask")
    def custom_chat():
        return {"reply": "yes"}

    return app


@pytest.mark.parametrize(
    ("routes", "named"),
    [
        (json.dumps([{"pth": "/typo"}, GOOD_ROUTE]), "CHATSPAN_CHAT_ROUTES[0]"),
        ('[{"path": "/api/ask", ', "CHATSPAN_CHAT_ROUTES"),  # not JSON at all
    ],
    ids=["misspelt-key", "bad-json"],
)
def test_a_typo_in_one_setting_keeps_every_other_chat_recorded(monkeypatch, caplog, routes, named):
    monkeypatch.setenv("CHATSPAN_CHAT_ROUTES", routes)
    monkeypatch.setenv("CHATSPAN_CAPTURE_CONTENT", "nope")
    recorder = SpanRecorder()
    app = _typo_app()
    with caplog.at_level(logging.ERROR, logger="chatspan"):
        ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    client = app.test_client()
    client.post(
        "/v1/chat-messages",
        json={"query": "private question", "user": "u-1", "response_mode": "blocking"},
        buffered=True,
    )
    client.post("/api/ask", json={"question": "private too"}, buffered=True)

    routes_recorded = sorted(s.attributes[sc.CHATSPAN_ROUTE] for s in recorder.spans())
    if named.endswith("[0]"):  # the good custom route still records
        assert routes_recorded == ["/api/ask", "/v1/chat-messages"]
    else:
        assert routes_recorded == ["/v1/chat-messages"]  # the built-in routes still record
    for span in recorder.spans():  # a capture switch that is not understood means no content
        assert sc.INPUT_VALUE not in span.attributes and sc.OUTPUT_VALUE not in span.attributes
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(named in line and "skipped" in line for line in errors), errors
    assert any("CHATSPAN_CAPTURE_CONTENT" in line and "'nope'" in line for line in errors), errors


def test_the_skipped_settings_are_listed_for_the_health_check():
    from chatspan.instrumentation import settings_problems

    problems = settings_problems(
        {
            "CHATSPAN_CHAT_ROUTES": json.dumps([GOOD_ROUTE, {"path": "/x", "operation": "talk"}]),
            "CHATSPAN_CAPTURE_CONTENT": "nope",
            "CHATSPAN_REDACT_PATTERNS": '["(unclosed"]',
        }
    )
    assert len(problems) == 3, problems
    assert any(p.startswith("CHATSPAN_CHAT_ROUTES[1]") for p in problems)
    assert any(p.startswith("CHATSPAN_CAPTURE_CONTENT") for p in problems)
    assert any(p.startswith("CHATSPAN_REDACT_PATTERNS") for p in problems)
    assert settings_problems({"CHATSPAN_CHAT_ROUTES": json.dumps([GOOD_ROUTE])}) == []


# -- retention: an age that says what it means, and a check before a big delete ----------


def _chats_aged(url: str, ages: list[timedelta]) -> None:
    """One chat row per age, created that long ago."""
    now = datetime.now(timezone.utc)
    spans = [
        SpanData(
            random.getrandbits(128) or 1,
            i + 1,
            "chat",
            int((now - age).timestamp() * 1e9),
            int((now - age).timestamp() * 1e9) + 1_000,
            False,
            {sc.GEN_AI_OPERATION_NAME: "chat", sc.USER_ID: f"aged-{i}"},
        )
        for i, age in enumerate(ages)
    ]
    engine = make_engine(url, timeout_s=10)
    RecordWriter(engine).write(spans)
    engine.dispose()


def _retention(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "chatspan"), "retention", "--table", "dify_logs", *args],
        env=clean_env(CHATSPAN_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_ambiguous_age_unit_is_refused(database_url):
    _chats_aged(database_url, [timedelta(hours=2), timedelta(days=40)])
    for ambiguous in ("1m", "30M"):
        refused = _retention(database_url, "--older-than", ambiguous, "--dry-run")
        assert refused.returncode == 2
        assert "minutes or months" in refused.stderr and "min" in refused.stderr
    counted = _retention(database_url, "--older-than", "90min", "--dry-run")
    assert counted.returncode == 0, counted.stderr
    assert "would delete 2 row(s)" in counted.stdout
    assert count_rows(database_url, "dify_logs") == 2


def test_a_real_run_over_a_tenth_of_a_table_needs_yes(database_url):
    _chats_aged(database_url, [timedelta(days=40)] * 2 + [timedelta(minutes=1)] * 8)
    refused = _retention(database_url, "--older-than", "30d")  # 2 of 10 rows: 20 %
    assert refused.returncode == 2
    assert "2 of 10" in refused.stderr and "--yes" in refused.stderr
    assert count_rows(database_url, "dify_logs") == 10  # nothing deleted
    assert _retention(database_url, "--older-than", "30d", "--dry-run").returncode == 0
    confirmed = _retention(database_url, "--older-than", "30d", "--yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert count_rows(database_url, "dify_logs") == 8
    _chats_aged(database_url, [timedelta(days=40)])  # 1 of 9 rows: 11 %, and then ...
    assert _retention(database_url, "--older-than", "30d").returncode == 2
    _chats_aged(database_url, [timedelta(minutes=1)] * 2)  # ... 1 of 11: 9 %
    assert _retention(database_url, "--older-than", "30d").returncode == 0
    assert count_rows(database_url, "dify_logs") == 10
