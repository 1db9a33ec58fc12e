"""Dify's process model: the gevent example (monkey-patched at import, answers from a
worker thread that calls a model over HTTP) under opentelemetry-instrument with
gunicorn's gevent and sync workers, two each; the FastAPI example with uvicorn workers.
Chats and errors land as rows; the model call is in the chat's trace, below the chat
span; SIGTERM flushes what is pending; a killed worker's replacement records too; and
workers left idle past a minute, then serving chats, log no traceback."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dify_client import ChatClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from chatspan.examples import fake_model
from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade

from rows import rows_where
from servers import APP_KEY, clean_env, run_app, stop, wait_for, worker_pids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    server = fake_model.serve(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1/completions"
    server.shutdown()


@pytest.fixture
def otlp_receiver():
    """A bare OTLP/HTTP receiver: every span it is sent, decoded."""
    spans: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = ExportTraceServiceRequest.FromString(
                self.rfile.read(int(self.headers["Content-Length"]))
            )
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    spans.extend(scope.spans)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", spans
    server.shutdown()


@pytest.fixture
def store(postgres_database):
    engine = make_engine(postgres_database, timeout_s=10)
    upgrade(engine)
    engine.dispose()
    return postgres_database


def _env(store: str, model: str, **extra: str) -> dict[str, str]:
    settings = {
        "CHATSPAN_DATABASE_URL": store,
        "EXAMPLE_MODEL_URL": model,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "dify-api",
    }
    return clean_env(**{**settings, **extra})


def _client(app) -> ChatClient:
    client = ChatClient(APP_KEY)
    client.base_url = f"{app.base_url}/v1"
    return client


def _chats_of(store: str, user: str, count: int) -> list[dict]:
    return wait_for(
        lambda: (
            (rows := rows_where(store, "dify_logs", user_id=user)) and len(rows) >= count and rows
        ),
        timeout=30,
        what=f"{count} chats of {user}",
    )


def _exercise(app, store: str) -> str:
    """Blocking, streaming and failing chats through dify-client; checks the rows."""
    user = f"pm-{uuid.uuid4().hex[:8]}"
    client = _client(app)
    blocking = client.create_chat_message({}, "What runs Dify?", user).json()
    streamed = client.create_chat_message({}, "And how does it stream?", user, "streaming")
    events = [json.loads(line[5:]) for line in streamed.iter_lines() if line.startswith(b"data:")]
    assert client.create_chat_message({}, "Try it [model-down]", user, "streaming").content
    assert client.create_chat_message({}, "crash [raise]", user).status_code == 500
    rows = {row["input_text"]: row for row in _chats_of(store, user, 4)}
    assert rows["What runs Dify?"]["output_text"] == blocking["answer"]
    assert rows["What runs Dify?"]["output_text"].startswith("Model answer to: What runs Dify?")
    streamed_text = "".join(e["answer"] for e in events if e["event"] == "message")
    assert rows["And how does it stream?"]["output_text"] == streamed_text
    assert rows["And how does it stream?"]["response_mode"] == "streaming"
    assert rows["And how does it stream?"]["output_tokens"] == len(streamed_text.split())
    assert rows["Try it [model-down]"]["status"] == "error"
    assert rows["crash [raise]"]["status"] == "error"
    errors = wait_for(
        lambda: (found := rows_where(store, "error", user_id=user)) and len(found) >= 2 and found,
        what="the two errors",
    )
    kinds = sorted(e["type_error"].rsplit(".", 1)[-1] for e in errors)
    assert kinds == ["ChatFailure", "completion_request_error"]
    # The model the answer's worker thread called over HTTP, in the chat's context.
    assert {(row["model"], row["provider"]) for row in rows.values() if row["status"] == "ok"} == {
        ("example-llm", "openai")
    }
    return user


def _master_pid(app) -> int:
    """gunicorn under opentelemetry-instrument: the launcher execs into gunicorn."""
    return app.process.pid


@pytest.mark.parametrize("server", ["gunicorn-gevent", "gunicorn-sync"])
def test_chats_and_errors_are_recorded_and_a_killed_worker_is_replaced(
    server, store, model, tmp_path
):
    with run_app(server, tmp_path, _env(store, model)) as app:
        _exercise(app, store)
        master = _master_pid(app)
        workers = wait_for(lambda: len(pids := worker_pids(master)) == 2 and pids, what="2 workers")
        for killed in workers:  # one at a time: then every worker is a replacement
            os.kill(killed, signal.SIGKILL)
            wait_for(
                lambda gone=killed: len(pids := worker_pids(master)) == 2 and gone not in pids,
                timeout=30,
                what="a replacement worker",
            )
        assert not set(workers) & set(worker_pids(master))
        user = f"after-kill-{uuid.uuid4().hex[:6]}"
        client = _client(app)
        for i in range(12):  # only replacement workers can answer these
            assert client.create_chat_message({}, f"still there? {i}", user, "streaming").content
        assert len(_chats_of(store, user, 12)) == 12
        log = app.log()
    assert _unexpected_tracebacks(log) == 0, log[-4000:]


def _unexpected_tracebacks(log: str) -> int:
    """Tracebacks in the log other than the one the "[raise]" chat asks the app to log."""
    return log.count("Traceback") - log.count("ChatFailure: the model adapter crashed")


@pytest.mark.parametrize("server", ["gunicorn-gevent", "gunicorn-sync"])
def test_sigterm_flushes_what_is_pending(server, store, model, tmp_path):
    env = _env(store, model, OTEL_BSP_SCHEDULE_DELAY="600000")  # nothing leaves on its own
    user = f"flush-{uuid.uuid4().hex[:6]}"
    with run_app(server, tmp_path, env) as app:
        client = _client(app)
        for i in range(6):
            mode = "streaming" if i % 2 else "blocking"
            assert client.create_chat_message({}, f"pending {i}", user, mode).content
        time.sleep(1)
        assert rows_where(store, "dify_logs", user_id=user) == []
        stop(app)  # SIGTERM
        assert app.process.returncode == 0
        log = app.log()
    assert len(rows_where(store, "dify_logs", user_id=user)) == 6
    assert "Traceback" not in log, log[-4000:]


def test_the_model_call_from_the_worker_thread_is_in_the_chats_trace(
    store, model, otlp_receiver, tmp_path
):
    needed = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.instrumentation.httpx")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:  # Dify 0.15.3's pins: opentelemetry-proto 1.15.0, no httpx instrumentation
        pytest.skip(f"this environment has no {' and no '.join(missing)} to see the model call")
    receiver, spans = otlp_receiver
    env = _env(
        store,
        model,
        OTEL_TRACES_EXPORTER="chatspan_postgres,otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
    )
    with run_app("gunicorn-gevent", tmp_path, env) as app:
        user = f"trace-{uuid.uuid4().hex[:6]}"
        assert (
            _client(app).create_chat_message({}, "Follow the model call", user, "streaming").content
        )
        (row,) = _chats_of(store, user, 1)
        trace_id = bytes.fromhex(row["trace_id"])

        def model_call():
            return next(
                (s for s in spans if s.trace_id == trace_id and s.kind == s.SPAN_KIND_CLIENT), None
            )

        call = wait_for(model_call, what="the model call's span")
    by_id = {s.span_id: s for s in spans if s.trace_id == trace_id}
    chat_span = bytes.fromhex(row["span_id"])
    ancestors, parent = [], call.parent_span_id
    while parent:
        ancestors.append(parent)
        parent = by_id[parent].parent_span_id if parent in by_id else b""
    assert chat_span in ancestors, "the model call must be below the chat span"


IDLE_S = 65  # the field saw gevent's AssertionError 20-50 s after boot, with no request


def test_workers_idle_past_a_minute_then_serving_chats_log_no_traceback(
    empty_postgres_database, model, tmp_path
):
    """Dify's shape with Dify's logging (INFO, a handler made after the patch), a new
    database (the first export migrates it from the export thread), a minute with no
    request, then chats on both workers."""
    store = empty_postgres_database
    env = _env(store, model, PYTHONPATH=str(Path(__file__).parent), OTEL_BSP_SCHEDULE_DELAY="5000")
    with run_app("gunicorn-gevent-dify-logging", tmp_path, env) as app:
        time.sleep(IDLE_S)  # the idle minute is what is tested: nothing to wait for
        user = f"idle-{uuid.uuid4().hex[:6]}"
        client = _client(app)
        for i in range(16):
            mode = "streaming" if i % 2 else "blocking"
            assert client.create_chat_message({}, f"after the idle minute {i}", user, mode).content
        assert len(_chats_of(store, user, 16)) == 16
        log = app.log()
    assert len(set(re.findall(r"Booting worker with pid: (\d+)", log))) == 2, log[-4000:]
    assert "Traceback" not in log and "AssertionError" not in log, log[-4000:]


def test_uvicorn_workers_record_chats(store, model, tmp_path):
    with run_app("gunicorn-uvicorn", tmp_path, _env(store, model)) as app:
        user = f"uv-{uuid.uuid4().hex[:6]}"
        client = _client(app)
        for i in range(4):
            mode = "streaming" if i % 2 else "blocking"
            assert client.create_chat_message({}, f"uvicorn {i}", user, mode).content
        assert len(_chats_of(store, user, 4)) == 4
        log = app.log()
    assert "Traceback" not in log
