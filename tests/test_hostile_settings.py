"""Settings an operator gets wrong: a typo in one chat setting leaves every other chat
recorded and is named loudly."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from chatspan import semconv as sc
from chatspan.instrumentation import ChatInstrumentor

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
