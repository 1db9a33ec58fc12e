"""Alerts posted to a local webhook receiver: error count, error rate, a new
fingerprint; deduplicated for the cool-down; run by the query service itself; and what
chat users can make them say: no mentions or disguised links, no flood, no repeats
after a restart."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from chatspan import semconv as sc
from chatspan.config import AlertSettings, ApiSettings
from chatspan.query_api import create_app
from chatspan.query_api.alerts import Alerter
from chatspan.query_api.state import state_of
from chatspan.records import SpanData, SpanEvent
from chatspan.store.engine import make_engine
from chatspan.store.tables import alert_state
from chatspan.store.writer import RecordWriter

from servers import wait_for


@pytest.fixture
def receiver():
    """An HTTP server that keeps every JSON body posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/secret-path-0123", received
    server.shutdown()


def _write(
    url: str,
    *,
    chats: int = 0,
    failed: int = 0,
    errors: list[tuple[str, str]] = (),
    ago=timedelta(minutes=1),
    handled: bool = False,
):
    """Chats (some failed) and exception events, `ago` before now; `handled`: on spans
    that did not fail (the app recovered)."""
    start = int((datetime.now(timezone.utc) - ago).timestamp() * 1e9)
    spans = []
    for i in range(chats):
        spans.append(
            SpanData(
                10_000 + i + int(time.time_ns() % 10**9) * 1000,
                1 + i,
                "chat",
                start + i,
                start + i + 10,
                i < failed,
                {sc.GEN_AI_OPERATION_NAME: "chat", sc.USER_ID: f"u{i}"},
            )
        )
    for j, (kind, message) in enumerate(errors):
        event = SpanEvent(
            sc.EXCEPTION_EVENT, start + j, {sc.EXCEPTION_TYPE: kind, sc.EXCEPTION_MESSAGE: message}
        )
        spans.append(
            SpanData(
                90_000 + j + int(time.time_ns() % 10**9) * 1000,
                5 + j,
                "x",
                start + j,
                start + j + 1,
                not handled,
                {},
                (event,),
            )
        )
    engine = make_engine(url, timeout_s=10)
    RecordWriter(engine).write(spans)
    engine.dispose()


def _age_alert_state(url: str, key: str, by: timedelta) -> None:
    """Move the moment an alert was last sent back in time."""
    engine = make_engine(url, timeout_s=10)
    with engine.begin() as connection:
        noted = connection.scalar(select(alert_state.c.noted_at).where(alert_state.c.key == key))
        connection.execute(
            update(alert_state).where(alert_state.c.key == key).values(noted_at=noted - by)
        )
    engine.dispose()


def _alerter(url: str, webhook: str, **overrides) -> Alerter:
    settings = AlertSettings(
        webhook_url=webhook, errors=5, error_rate=0.3, min_chats=10, cooldown_minutes=30
    )
    return Alerter(
        make_engine(url, timeout_s=10), AlertSettings(**{**settings.__dict__, **overrides})
    )


def test_too_many_errors_alert_once_within_the_cool_down(database_url, receiver):
    webhook, received = receiver
    alerter = _alerter(database_url, webhook, new_fingerprint=False)
    _write(database_url, errors=[("TimeoutError", f"took {i} s") for i in range(4)])
    assert alerter.check() == []
    _write(database_url, errors=[("TimeoutError", f"took {i} s") for i in range(4, 7)])
    (alert,) = alerter.check()
    assert alert.payload["alert"] == "errors"
    assert received[0]["value"] == 7 and received[0]["threshold"] == 5
    assert received[0]["text"].startswith("chatspan: 7 errors in the last 5 min")
    assert alerter.check() == []  # the same alert, within the cool-down
    _age_alert_state(database_url, "errors", timedelta(minutes=31))  # ... and after it
    assert [a.key for a in alerter.check()] == ["errors"]
    assert len(received) == 2


def test_old_errors_do_not_count(database_url, receiver):
    webhook, received = receiver
    _write(database_url, errors=[("E", "x")] * 9, ago=timedelta(hours=2))
    assert _alerter(database_url, webhook, new_fingerprint=False).check() == []
    assert received == []


def test_errors_the_app_recovered_from_do_not_alert(database_url, receiver):
    webhook, received = receiver
    _write(database_url, errors=[("TimeoutError", f"took {i} s") for i in range(9)], handled=True)
    assert _alerter(database_url, webhook).check() == []  # neither the count nor a new one
    assert received == []


def test_a_high_error_rate_alerts(database_url, receiver):
    webhook, received = receiver
    _write(database_url, chats=20, failed=8)
    alerts = _alerter(database_url, webhook, errors=0, new_fingerprint=False).check()
    assert [a.payload["alert"] for a in alerts] == ["error_rate"]
    assert received[0]["value"] == 0.4
    assert "40% of 20 chats failed" in received[0]["text"]


def test_a_rate_over_too_few_chats_does_not_alert(database_url, receiver):
    webhook, _received = receiver
    _write(database_url, chats=5, failed=5)
    assert _alerter(database_url, webhook, errors=0, new_fingerprint=False).check() == []


def test_a_never_seen_fingerprint_alerts_once(database_url, receiver):
    webhook, received = receiver
    _write(database_url, errors=[("KeyError", "missing key 12")], ago=timedelta(days=3))
    alerter = _alerter(database_url, webhook, errors=0)
    assert alerter.check() == []  # the KeyError is older than the window
    _write(
        database_url,
        errors=[("KeyError", "missing key 47"), ("QuotaError", "quota reached for app 7")],
    )
    alerts = alerter.check()
    assert [a.payload["type_error"] for a in alerts] == ["QuotaError"]  # KeyError's is known
    assert received[-1]["alert"] == "new_fingerprint"
    assert received[-1]["text"] == "chatspan: a new error: QuotaError: quota reached for app 7"
    _write(database_url, errors=[("QuotaError", "quota reached for app 8")])
    assert alerter.check() == []


def test_the_service_runs_the_checks_in_the_background(database_url, receiver):
    webhook, received = receiver
    _write(database_url, errors=[("E", f"e{i}") for i in range(8)])
    alerts = AlertSettings(webhook_url=webhook, errors=5, new_fingerprint=False, interval_s=0.2)
    app = create_app(
        ApiSettings(database_url=database_url, admin_api_keys=("k" * 20,)), alerts=alerts
    )
    with TestClient(app):
        wait_for(lambda: received, timeout=10, what="an alert from the service")
    state_of(app).engine.dispose()
    assert received[0]["alert"] == "errors"


def test_an_unreachable_webhook_is_logged_without_its_address(database_url, caplog):
    _write(database_url, errors=[("E", "x")] * 7)
    alerter = _alerter(
        database_url, "http://127.0.0.1:1/hooks/T000/B000/secret", new_fingerprint=False
    )
    assert len(alerter.check()) == 1
    assert alerter.sent == 0
    assert "could not send the" in caplog.text  # the failure was logged
    assert "secret" not in caplog.text
    assert alerter.check() != []  # not sent, so not in cool-down: tried again


def test_a_bad_webhook_url_names_the_variable():
    from chatspan.config import ConfigError

    with pytest.raises(ConfigError, match="CHATSPAN_ALERT_WEBHOOK_URL"):
        AlertSettings.from_env({"CHATSPAN_ALERT_WEBHOOK_URL": "hooks.slack.com/x"})


# -- what a chat user can make the alerter say -----------------------------------------

HOSTILE = "<!channel> <@U123> <https://evil.example|Click here> & win"


def _distinct_messages(count: int) -> list[str]:
    """Messages that fingerprint apart (letters: the fingerprint ignores numbers)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        f"failure {letters[i % 26]}{letters[i // 26 % 26]}{letters[i // 676]}" for i in range(count)
    ]


def test_chat_controlled_text_cannot_ping_or_link_in_chat_tools(database_url, receiver):
    webhook, received = receiver
    alerter = _alerter(database_url, webhook, errors=0)
    alerter.check()
    _write(database_url, errors=[("ValueError", HOSTILE), ("<!here>", "x" * 5_140)])
    alerter.check()
    hostile, long = received
    assert hostile["text"] == (
        "chatspan: a new error: ValueError: &lt;!channel&gt; &lt;@U123&gt; "
        "&lt;https://evil.example|Click here&gt; &amp; win"
    )
    assert "<" not in long["text"] and long["text"].startswith(
        "chatspan: a new error: &lt;!here&gt;"
    )
    assert len(long["text"]) <= 500
    assert len(long["sample_message"]) <= 300


def test_a_flood_of_new_errors_posts_a_few_alerts_and_one_summary(database_url, receiver):
    webhook, received = receiver
    alerter = _alerter(database_url, webhook, errors=5, max_per_check=5, max_per_hour=12)
    alerter.check()
    _write(database_url, errors=[("ValueError", m) for m in _distinct_messages(100)])
    alerter.check()
    assert len(received) == 5  # the cap per check, the summary included
    *alerts, summary = received
    assert [a["alert"] for a in alerts] == [
        "errors",
        "new_fingerprint",
        "new_fingerprint",
        "new_fingerprint",
    ]
    assert summary["alert"] == "summary"
    assert summary["held_back"] == {"new_fingerprint": 97}
    assert "97" in summary["text"]
    # More floods within the hour: at most the hourly cap in all.
    for batch in range(3):
        _write(database_url, errors=[(f"Error{batch}", m) for m in _distinct_messages(20)])
        alerter.check()
    assert len(received) == 12
    assert received[-1]["alert"] == "summary"
    # What the hourly cap held back is summed up once the hour has passed.
    alerter.check(now=datetime.now(timezone.utc) + timedelta(minutes=61))
    assert received[-1]["alert"] == "summary"
    assert received[-1]["held_back"] == {"new_fingerprint": 20}


def test_a_restart_neither_repeats_nor_misses_new_errors(database_url, receiver):
    webhook, received = receiver
    first = _alerter(database_url, webhook, errors=0)
    first.check()
    _write(database_url, errors=[("ValueError", m) for m in _distinct_messages(3)])
    assert len(first.check()) == 3
    # The service restarts; errors arrive while it is down.
    _write(database_url, errors=[("KeyError", "a new kind of failure")])
    second = _alerter(database_url, webhook, errors=0)
    assert [a.payload["type_error"] for a in second.check()] == ["KeyError"]
    assert len(received) == 4
    # What has been announced is kept in the database, not in the service's memory.
    engine = make_engine(database_url, timeout_s=10)
    with engine.connect() as connection:
        stored = connection.scalar(select(func.count()).select_from(alert_state))
    engine.dispose()
    assert stored == 4
