"""The example apps under the real `opentelemetry-instrument` launcher, exporting with
chatspan_postgres into PostgreSQL, driven by the PyPI dify-client and by raw HTTP.

Each server (flask's own, gunicorn, uvicorn) runs once per module; every test uses its
own end-user id, so its rows are told apart from the others'.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from dify_client import ChatClient

from chatspan.examples import dify_records

from rows import rows_where
from servers import APP_KEY, clean_env, run_app, wait_for

pytestmark = pytest.mark.slow

SERVERS = ["flask", "gunicorn", "uvicorn"]


@pytest.fixture(scope="module", params=SERVERS)
def app(request, postgres_database, tmp_path_factory):
    env = clean_env(
        CHATSPAN_DATABASE_URL=postgres_database,
        OTEL_TRACES_EXPORTER="chatspan_postgres,console",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="dify-api",
    )
    with run_app(request.param, tmp_path_factory.mktemp(request.param), env) as running:
        running.db = postgres_database
        running.server = request.param
        yield running


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _client(app) -> ChatClient:
    client = ChatClient(APP_KEY)
    client.base_url = f"{app.base_url}/v1"
    return client


def _chats(app, user: str, count: int = 1) -> list[dict]:
    return wait_for(
        lambda: (
            (rows := rows_where(app.db, "dify_logs", user_id=user)) and len(rows) >= count and rows
        ),
        what=f"{count} chat row(s) of {user}",
    )


def _wait_for_earlier_spans(app) -> None:
    """One more chat, and wait for its row: spans are stored in the order they ended,
    so whatever ended before it is stored by then (a check for absence can trust it)."""
    user = _user()
    _client(app).create_chat_message({}, "sentinel", user)
    _chats(app, user)


def _errors(app, count: int = 1, **where) -> list[dict]:
    return wait_for(
        lambda: (rows := rows_where(app.db, "error", **where)) and len(rows) >= count and rows,
        what=f"{count} error row(s) where {where}",
    )


def test_blocking_chat_from_dify_client(app):
    user = _user()
    response = _client(app)._send_request(
        "POST",
        "/chat-messages",
        {"inputs": {}, "query": "What is chatspan?", "user": user, "response_mode": "blocking"},
    )
    assert response.status_code == 200
    answer = response.json()
    # and once more through the client's own method, continuing the conversation
    _client(app).create_chat_message(
        {}, "And how do I install it?", user, conversation_id=answer["conversation_id"]
    )
    first, second = _chats(app, user, 2)
    assert first["input_text"] == "What is chatspan?"
    assert first["output_text"] == answer["answer"]
    assert first["conversation_id"] == answer["conversation_id"] == second["conversation_id"]
    assert first["message_id"] == answer["message_id"]
    usage = answer["metadata"]["usage"]
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
    )
    assert first["response_mode"] == "blocking"
    assert first["status"] == "ok"
    assert first["route"] == "/v1/chat-messages"
    assert first["service_name"] == "dify-api"
    if app.server == "uvicorn":  # the FastAPI example loads no Dify objects: the key's digest
        assert first["app_id"].startswith("key-") and APP_KEY not in first["app_id"]
        assert first["provider"] is None
    else:  # the Flask example loads the app and records the message's model, as Dify does
        assert (first["app_id"], first["app_name"]) == (dify_records.APPS[0][0], "Support Bot")
        assert (first["model"], first["provider"]) == (
            dify_records.MODEL,
            dify_records.MODEL_PROVIDER,
        )
    assert 0 < first["latency_ms"] < 5000
    assert len(first["trace_id"]) == 32
    assert second["input_text"] == "And how do I install it?"


def test_trace_id_is_the_callers(app):
    user = _user()
    trace_id = uuid.uuid4().hex
    httpx.post(
        f"{app.base_url}/v1/chat-messages",
        headers={
            "Authorization": f"Bearer {APP_KEY}",
            "traceparent": f"00-{trace_id}-{'1' * 16}-01",
        },
        json={"inputs": {}, "query": "trace me", "user": user, "response_mode": "blocking"},
    )
    (row,) = _chats(app, user)
    assert row["trace_id"] == trace_id


def test_streaming_chat_from_dify_client(app):
    user = _user()
    response = _client(app).create_chat_message(
        {}, "Stream the answer, please", user, response_mode="streaming"
    )
    events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith(b"data:")]
    streamed = "".join(e["answer"] for e in events if e["event"] in ("message", "agent_message"))
    (row,) = _chats(app, user)
    assert row["output_text"] == streamed
    assert row["input_text"] == "Stream the answer, please"
    assert row["response_mode"] == "streaming"
    assert row["conversation_id"] == events[0]["conversation_id"]
    assert row["message_id"] == events[0]["message_id"]
    usage = next(e for e in events if e["event"] == "message_end")["metadata"]["usage"]
    assert (row["input_tokens"], row["output_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert row["time_to_first_token_ms"] is not None
    assert 0 < row["time_to_first_token_ms"] <= row["latency_ms"]
    assert row["status"] == "ok"
    assert "tts" not in json.dumps(row["attributes"])


def test_moderated_answer_is_the_replacement(app):
    user = _user()
    response = _client(app).create_chat_message({}, "say it [replace]", user, "streaming")
    assert b"message_replace" in response.content
    (row,) = _chats(app, user)
    assert row["output_text"] == "This answer was moderated."


def test_stream_with_an_error_event(app):
    user = _user()
    response = _client(app).create_chat_message({}, "fail [stream-error]", user, "streaming")
    assert b'"event": "error"' in response.content
    (chat,) = _chats(app, user)
    (error,) = _errors(app, user_id=user)
    assert chat["status"] == "error"
    assert chat["output_text"] == "You asked: fail "
    assert error["type_error"] == "dify.completion_request_error"
    assert "quota exceeded" in error["error_message"]
    assert error["conversation_id"] == chat["conversation_id"]
    assert error["trace_id"] == chat["trace_id"]


def test_workflow_with_a_failed_node(app):
    user = _user()
    with httpx.stream(
        "POST",
        f"{app.base_url}/v1/workflows/run",
        headers={"Authorization": f"Bearer {APP_KEY}"},
        json={"inputs": {"city": "Oslo", "fail": True}, "user": user, "response_mode": "streaming"},
    ) as response:
        response.read()
    (chat,) = _chats(app, user)
    (error,) = _errors(app, user_id=user)
    assert chat["status"] == "error"
    assert error["type_error"] == "dify.workflow_failed"
    assert error["node"] == "Fetch weather"
    assert error["node_type"] == "http-request"
    assert error["attributes"]["chatspan.node.id"] == "http-2"
    assert "timed out" in error["error_message"]


def test_successful_workflow_output(app):
    user = _user()
    httpx.post(
        f"{app.base_url}/v1/workflows/run",
        headers={"Authorization": f"Bearer {APP_KEY}"},
        json={"inputs": {"city": "Oslo"}, "user": user, "response_mode": "blocking"},
    )
    (chat,) = _chats(app, user)
    assert chat["output_text"] == "Tomorrow in Oslo: sunny, 21 degrees."
    assert chat["total_tokens"] == 42
    assert chat["status"] == "ok"


def test_exception_in_a_chat_view(app):
    user = _user()
    response = _client(app).create_chat_message({}, "crash [raise]", user)
    assert response.status_code == 500
    (chat,) = _chats(app, user)
    errors = _errors(app, user_id=user)
    assert chat["status"] == "error"
    assert len(errors) == 1
    assert errors[0]["type_error"].endswith("ChatFailure")
    assert "crashed" in errors[0]["error_message"]
    assert "raise ChatFailure" in errors[0]["stacktrace"]
    _wait_for_earlier_spans(app)  # the server span too: its copy must not add a row
    assert len(rows_where(app.db, "error", trace_id=chat["trace_id"])) == 1


def test_exception_on_a_non_chat_route(app):
    trace_id = uuid.uuid4().hex
    response = httpx.get(
        f"{app.base_url}/v1/boom", headers={"traceparent": f"00-{trace_id}-{'2' * 16}-01"}
    )
    assert response.status_code == 500
    (error,) = _errors(app, trace_id=trace_id)
    assert error["type_error"] == "RuntimeError"
    assert error["route"] == "/v1/boom"
    _wait_for_earlier_spans(app)
    assert len(rows_where(app.db, "error", trace_id=trace_id)) == 1
    assert rows_where(app.db, "dify_logs", trace_id=trace_id) == []


def test_non_chat_requests_make_no_chat_rows(app):
    trace_id = uuid.uuid4().hex
    response = httpx.get(
        f"{app.base_url}/v1/parameters", headers={"traceparent": f"00-{trace_id}-{'3' * 16}-01"}
    )
    assert response.status_code == 200
    _wait_for_earlier_spans(app)
    assert rows_where(app.db, "dify_logs", trace_id=trace_id) == []


def test_client_leaving_mid_stream_is_a_cancelled_chat(app):
    user = _user()
    with httpx.stream(
        "POST",
        f"{app.base_url}/v1/chat-messages",
        headers={"Authorization": f"Bearer {APP_KEY}"},
        json={"inputs": {}, "query": "long one [slow]", "user": user, "response_mode": "streaming"},
        timeout=30,
    ) as response:
        started = time.monotonic()
        first = next(response.iter_raw())
        # Buffered, the first byte would wait for the whole answer: 50 pieces, 0.2 s apart.
        assert time.monotonic() - started < 5, "the stream must not be buffered"
        assert first
    (chat,) = wait_for(
        lambda: [
            r for r in rows_where(app.db, "dify_logs", user_id=user) if r["status"] == "cancelled"
        ],
        timeout=15,
        what="the cancelled chat",
    )
    assert chat["latency_ms"] < 9000, (
        "the span ends when the client leaves, not at the answer's end"
    )


def test_openai_compatible_route(app):
    user = _user()
    body = {
        "model": "gpt-4o-mini",
        "user": user,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "What is OTLP?"},
        ],
    }
    blocking = httpx.post(f"{app.base_url}/v1/chat/completions", json=body).json()
    with httpx.stream(
        "POST", f"{app.base_url}/v1/chat/completions", json={**body, "stream": True}
    ) as response:
        response.read()
    first, second = _chats(app, user, 2)
    for row in (first, second):
        assert row["input_text"] == "What is OTLP?"
        assert row["output_text"].strip() == blocking["choices"][0]["message"]["content"]
        assert row["model"] == "gpt-4o-mini"
        assert row["provider"] == "openai"
        assert (row["input_tokens"], row["output_tokens"]) == (
            blocking["usage"]["prompt_tokens"],
            blocking["usage"]["completion_tokens"],
        )
    assert {first["response_mode"], second["response_mode"]} == {"blocking", "streaming"}


def test_console_debugger_route_names_the_app(app):
    query = f"debug me q{uuid.uuid4().hex[:8]}"  # a letter: an all-digit run is redacted
    app_id, token = dify_records.APPS[0][0], APP_KEY
    if app.server != "uvicorn":  # the Flask example signs the console in, as Dify does
        _account, email, password = dify_records.ACCOUNT
        login = httpx.post(
            f"{app.base_url}/console/api/login", json={"email": email, "password": password}
        )
        token = login.json()["data"]["access_token"]
    httpx.post(
        f"{app.base_url}/console/api/apps/{app_id}/chat-messages",
        headers={"Authorization": f"Bearer {token}"},
        json={"inputs": {}, "query": query, "response_mode": "blocking"},
    )
    (row,) = wait_for(lambda: rows_where(app.db, "dify_logs", input_text=query), what="the row")
    assert row["app_id"] == app_id
    assert row["route"] == "/console/api/apps/<app_id>/chat-messages"
    if app.server != "uvicorn":
        assert row["user_id"] == dify_records.ACCOUNT[0]


def test_the_app_key_reaches_no_span_and_no_row(app):
    user = _user()
    _client(app).create_chat_message({}, "keep my key secret", user)
    _chats(app, user)
    wait_for(lambda: user in app.log(), what="the console exporter to print the chat span")
    assert APP_KEY not in app.log()
    rows = rows_where(app.db, "dify_logs", user_id=user)
    assert APP_KEY not in json.dumps(rows, default=str)
