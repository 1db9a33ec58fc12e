"""The launcher with particular settings: bytes unchanged, content capture off,
redaction, defaults, configuration mistakes, chatspan or the framework
instrumentation turned off."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy.engine import make_url

from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade

from rows import rows_where
from servers import APP_KEY, clean_env, run_app, wait_for
from statements import StatementLog

pytestmark = pytest.mark.slow

HEADERS = {"Authorization": f"Bearer {APP_KEY}"}


def _exchanges(base_url: str, user: str) -> list[bytes]:
    """Blocking, streaming, workflow and OpenAI requests; the raw bytes of each answer."""
    requests = [
        (
            "/v1/chat-messages",
            {"query": "hi", "user": user, "response_mode": "blocking", "inputs": {}},
        ),
        (
            "/v1/chat-messages",
            {"query": "hi", "user": user, "response_mode": "streaming", "inputs": {}},
        ),
        (
            "/v1/chat-messages",
            {"query": "x [stream-error]", "user": user, "response_mode": "streaming"},
        ),
        (
            "/v1/workflows/run",
            {"inputs": {"fail": True}, "user": user, "response_mode": "streaming"},
        ),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True}),
        ("/v1/chat-messages", {"user": user, "response_mode": "blocking"}),  # 400: no query
    ]
    answers = []
    for path, body in requests:
        with httpx.stream("POST", base_url + path, headers=HEADERS, json=body) as response:
            answers.append(f"{response.status_code} ".encode() + b"".join(response.iter_raw()))
    return answers


@pytest.mark.parametrize("server", ["flask", "uvicorn"])
def test_clients_receive_the_same_bytes_as_without_chatspan(server, postgres_database, tmp_path):
    user = f"same-bytes-{uuid.uuid4().hex[:6]}"
    env = clean_env(CHATSPAN_DATABASE_URL=postgres_database, OTEL_BSP_SCHEDULE_DELAY="100")
    with run_app(server, tmp_path, env, instrumented=False) as bare:
        expected = _exchanges(bare.base_url, user)
    with run_app(server, tmp_path, env) as instrumented:
        received = _exchanges(instrumented.base_url, user)
        wait_for(lambda: len(rows_where(postgres_database, "dify_logs", user_id=user)) >= 4)
    assert received == expected


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A migrated SQLite store (so the test can poll it before the first export)."""
    url = f"sqlite:///{tmp_path / 'chatspan.db'}"
    engine = make_engine(url, timeout_s=10)
    upgrade(engine)
    engine.dispose()
    return url


def test_capture_off_keeps_every_text_out_of_spans_and_rows(sqlite_url, tmp_path):
    env = clean_env(
        CHATSPAN_DATABASE_URL=sqlite_url,
        CHATSPAN_CAPTURE_CONTENT="false",
        OTEL_TRACES_EXPORTER="chatspan_postgres,console",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    secret_question = "my-private-question-" + uuid.uuid4().hex
    with run_app("flask", tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={
                "query": secret_question,
                "user": "u1",
                "response_mode": "streaming",
                "inputs": {},
            },
        )
        (row,) = wait_for(lambda: rows_where(sqlite_url, "dify_logs", user_id="u1"))
        wait_for(lambda: '"gen_ai.operation.name": "chat"' in app.log(), what="the console copy")
        log = app.log()
    assert row["input_text"] is None and row["output_text"] is None
    assert row["output_tokens"] is not None  # the metrics are still there
    assert secret_question not in json.dumps(row, default=str)
    assert "You asked" not in json.dumps(row, default=str)
    assert '"gen_ai.operation.name": "chat"' in log  # the console exporter did print the chat span
    assert secret_question not in log
    assert "You asked" not in log


def test_the_genai_switch_turns_capture_off_too(sqlite_url, tmp_path):
    env = clean_env(
        CHATSPAN_DATABASE_URL=sqlite_url,
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="false",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with run_app("uvicorn", tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": "hidden", "user": "u2", "response_mode": "blocking", "inputs": {}},
        )
        (row,) = wait_for(lambda: rows_where(sqlite_url, "dify_logs", user_id="u2"))
    assert row["input_text"] is None and row["output_text"] is None


def test_redaction_masks_personal_data_and_keys_before_spans(sqlite_url, tmp_path):
    env = clean_env(
        CHATSPAN_DATABASE_URL=sqlite_url,
        CHATSPAN_REDACT_PATTERNS=r'["TICKET-\\d+"]',
        OTEL_TRACES_EXPORTER="chatspan_postgres,console",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    question = (
        "I am jane.roe@example.org, call +44 20 7946 0958, card 4111 1111 1111 1111, "
        "my key is app-ABCDEFGHIJKLMNOPQRSTUVWX, about TICKET-4711"
    )
    with run_app("flask", tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": question, "user": "u3", "response_mode": "blocking", "inputs": {}},
        )
        (row,) = wait_for(lambda: rows_where(sqlite_url, "dify_logs", user_id="u3"))
        wait_for(lambda: "[REDACTED_EMAIL]" in app.log(), what="the console exporter's copy")
        log = app.log()
    for secret in (
        "jane.roe@example.org",
        "7946 0958",
        "4111 1111 1111 1111",
        "app-ABCDEFGHIJKLMNOPQRSTUVWX",
        "TICKET-4711",
    ):
        assert secret not in row["input_text"]
        assert secret not in row["output_text"]  # the example echoes the question
        assert secret not in log
    assert "[REDACTED_EMAIL]" in row["input_text"]
    assert "[REDACTED_PHONE]" in row["input_text"]
    assert "[REDACTED_CARD]" in row["input_text"]
    assert "[REDACTED_KEY]" in row["input_text"]
    assert "about [REDACTED]" in row["input_text"]


def test_only_the_database_url_is_needed(sqlite_url, tmp_path):
    """No OTEL_* setting at all: traces go to chatspan_postgres, metrics and logs nowhere."""
    env = clean_env(CHATSPAN_DATABASE_URL=sqlite_url, OTEL_BSP_SCHEDULE_DELAY="100")
    with run_app("gunicorn", tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": "defaults", "user": "u4", "response_mode": "blocking", "inputs": {}},
        )
        wait_for(lambda: rows_where(sqlite_url, "dify_logs", user_id="u4"))
        log = app.log()
    assert "Traceback" not in log
    assert "Failed" not in log and "ERROR" not in log


def test_a_postgres_url_as_operators_write_it(inserting_statements: StatementLog, tmp_path):
    """postgres://, the spelling of libpq and many hosting panels: chats land, through COPY."""
    url = make_url(inserting_statements.url).set(drivername="postgres")
    env = clean_env(
        CHATSPAN_DATABASE_URL=url.render_as_string(hide_password=False),
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with run_app("gunicorn", tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": "spelled", "user": "u-pg", "response_mode": "streaming", "inputs": {}},
        )
        (row,) = wait_for(lambda: rows_where(inserting_statements.url, "dify_logs", user_id="u-pg"))
        log = app.log()
    assert row["output_text"].startswith("You asked: spelled")
    assert set(inserting_statements.statements()) == {("dify_logs", "COPY")}
    assert "Traceback" not in log and "ERROR" not in log


def test_a_bad_setting_leaves_the_app_running_with_one_clear_line(tmp_path):
    env = clean_env(
        CHATSPAN_DATABASE_URL="mysql://root:hunter2@db/chat",
        OTEL_TRACES_EXPORTER="chatspan_postgres",
    )
    with run_app("flask", tmp_path, env) as app:
        response = httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": "still works?", "user": "u5", "response_mode": "blocking", "inputs": {}},
        )
        log = app.log()
    assert response.status_code == 200
    lines = [line for line in log.splitlines() if "chatspan" in line and "off" in line]
    assert len(lines) == 1, log
    assert "CHATSPAN_DATABASE_URL" in lines[0]
    assert "hunter2" not in log
    assert "Traceback" not in log


def test_an_exporter_that_is_not_installed_leaves_the_others_exporting(sqlite_url, tmp_path):
    env = clean_env(
        CHATSPAN_DATABASE_URL=sqlite_url,
        OTEL_TRACES_EXPORTER="chatspan_postgres,otlp_misspelt",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with run_app("flask", tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": "recorded?", "user": "u7", "response_mode": "blocking", "inputs": {}},
        )
        wait_for(lambda: rows_where(sqlite_url, "dify_logs", user_id="u7"), what="the chat")
        log = app.log()
    (line,) = [line for line in log.splitlines() if "otlp_misspelt" in line]
    assert "OTEL_TRACES_EXPORTER" in line and "chatspan_postgres only" in line
    assert "Traceback" not in log


def test_a_typo_in_a_chat_setting_is_named_and_every_other_chat_recorded(tmp_path, sqlite_url):
    env = clean_env(
        CHATSPAN_DATABASE_URL=sqlite_url,
        CHATSPAN_CHAT_ROUTES='[{"pth": "/x"}]',
        CHATSPAN_CAPTURE_CONTENT="nope",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with run_app("flask", tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": "typo", "user": "u-typo", "response_mode": "blocking", "inputs": {}},
        )
        (row,) = wait_for(lambda: rows_where(sqlite_url, "dify_logs", user_id="u-typo"))
        log = app.log()
    assert row["input_text"] is None and row["output_text"] is None  # the safer choice
    (routes_line,) = [line for line in log.splitlines() if "CHATSPAN_CHAT_ROUTES[0]" in line]
    assert "skipped" in routes_line
    (capture_line,) = [line for line in log.splitlines() if "CHATSPAN_CAPTURE_CONTENT" in line]
    assert "'nope'" in capture_line and "not captured" in capture_line
    assert "Traceback" not in log


def test_disabling_chatspan_by_name(sqlite_url, tmp_path):
    env = clean_env(
        CHATSPAN_DATABASE_URL=sqlite_url,
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="chatspan",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with run_app("flask", tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": "not recorded", "user": "u6", "response_mode": "blocking", "inputs": {}},
        )
        httpx.get(app.base_url + "/v1/boom")  # the Flask instrumentation still records this
        wait_for(lambda: rows_where(sqlite_url, "error", route="/v1/boom"))
    assert rows_where(sqlite_url, "dify_logs", user_id="u6") == []


@pytest.mark.parametrize("server", ["flask", "uvicorn"])
def test_without_the_framework_instrumentation(server, sqlite_url, tmp_path):
    """Only chatspan: chat spans are roots, and errors on other routes still get a span."""
    env = clean_env(
        CHATSPAN_DATABASE_URL=sqlite_url,
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="flask,fastapi,asgi,wsgi,starlette",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with run_app(server, tmp_path, env) as app:
        httpx.post(
            app.base_url + "/v1/chat-messages",
            headers=HEADERS,
            json={"query": "alone", "user": "u7", "response_mode": "streaming", "inputs": {}},
        )
        httpx.get(app.base_url + "/v1/boom")
        (chat,) = wait_for(lambda: rows_where(sqlite_url, "dify_logs", user_id="u7"))
        (error,) = wait_for(lambda: rows_where(sqlite_url, "error", route="/v1/boom"))
    assert chat["output_text"].startswith("You asked: alone")
    assert error["type_error"] == "RuntimeError"
