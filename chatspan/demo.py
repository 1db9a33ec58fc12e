"""``chatspan demo``: the example Dify-shaped app under the real instrumentation, real
traffic through it, and the admin API over what was recorded."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import func, select

from chatspan.examples.dify_records import APPS
from chatspan.store.engine import make_engine, safe_url
from chatspan.store.migrate import upgrade
from chatspan.store.tables import dify_logs, error

APP_KEY = APPS[0][3]  # the example's chat app; a placeholder key
HEADERS = {"Authorization": f"Bearer {APP_KEY}"}


def record_traffic(database_url: str) -> tuple[int, int]:
    """Run the example app under opentelemetry-instrument and drive traffic through it.

    Returns the number of chat and error rows this run added."""
    engine = make_engine(database_url, timeout_s=30)
    upgrade(engine)
    before = _counts(engine)
    port = _free_port()
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "app.log"
        app = _start_example_app(database_url, port, log_path)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait(lambda: _serving(base), 30, "the example app to start", log_path)
            chats, errors = _drive(base)
            print(f"  sent {chats} chats ({errors} of them meant to fail, plus a broken route)")
            _wait(
                lambda: (
                    _counts(engine)[0] - before[0] >= chats
                    and _counts(engine)[1] - before[1] >= errors + 1
                ),
                30,
                "the rows to be written",
                log_path,
            )
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=15)
    after = _counts(engine)
    engine.dispose()
    return after[0] - before[0], after[1] - before[1]


def print_summary(database_url: str) -> None:
    engine = make_engine(database_url, timeout_s=30)
    with engine.connect() as connection:
        chats, errors = _counts(engine)
        per_user = connection.execute(
            select(dify_logs.c.user_id, func.count())
            .group_by(dify_logs.c.user_id)
            .order_by(dify_logs.c.user_id)
        ).all()
        by_type = connection.execute(
            select(error.c.type_error, func.count())
            .group_by(error.c.type_error)
            .order_by(error.c.type_error)
        ).all()
        recent = connection.execute(
            select(
                dify_logs.c.user_id,
                dify_logs.c.status,
                dify_logs.c.response_mode,
                dify_logs.c.input_text,
                dify_logs.c.output_text,
            )
            .order_by(dify_logs.c.created_at.desc())
            .limit(5)
        ).all()
    engine.dispose()
    print(f"\n{safe_url(database_url)} now holds {chats} chats and {errors} errors")
    print("  chats per user: " + ", ".join(f"{user or '-'} {count}" for user, count in per_user))
    print("  errors by type: " + ", ".join(f"{kind} {count}" for kind, count in by_type))
    print("  newest chats:")
    for user, status, mode, question, answer in recent:
        who = f"{user or '-':<6} {status:<9} {mode or '-':<9}"
        print(f"    {who} {_short(question)!r} -> {_short(answer)!r}")


def _drive(base: str) -> tuple[int, int]:
    """Several users and conversations, blocking and streaming, and the usual failures."""
    chats = failures = 0
    with httpx.Client(base_url=base, headers=HEADERS, timeout=30) as client:

        def chat(user: str, query: str, mode: str, conversation: str | None = None) -> str | None:
            nonlocal chats
            body = {"inputs": {}, "query": query, "user": user, "response_mode": mode}
            if conversation:
                body["conversation_id"] = conversation
            with client.stream("POST", "/v1/chat-messages", json=body) as response:
                response.read()
            chats += 1
            if mode == "blocking" and response.status_code == 200:
                return response.json()["conversation_id"]
            return conversation

        for user, topic in [("alice", "billing"), ("bob", "SSO"), ("carol", "exports")]:
            conversation = chat(user, f"How do I set up {topic}?", "blocking")
            chat(user, f"And what does {topic} cost?", "streaming", conversation)
            chat(user, "Thanks, that helps.", "blocking", conversation)
        chat("dave", "Summarise my last invoice", "streaming")
        chat("erin", "Translate 'good morning' to French", "blocking")
        chat("bob", "Why is my export slow? [stream-error]", "streaming")
        chat("carol", "Reset everything [raise]", "blocking")
        failures += 2
        for user, inputs, mode in [
            ("dave", {"city": "Oslo", "fail": True}, "streaming"),  # a node fails
            ("erin", {"city": "Lima"}, "blocking"),
        ]:
            body = {"inputs": inputs, "user": user, "response_mode": mode}
            with client.stream("POST", "/v1/workflows/run", json=body) as response:
                response.read()
            chats += 1
        failures += 1
        openai_body = {
            "model": "gpt-4o-mini",
            "user": "frank",
            "messages": [{"role": "user", "content": "What is OTLP?"}],
        }
        client.post("/v1/chat/completions", json=openai_body)
        chats += 1
        client.get("/v1/parameters")
        client.get("/v1/boom")
    return chats, failures


def _start_example_app(database_url: str, port: int, log_path: Path) -> subprocess.Popen:
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    command = [
        str(launcher)
        if launcher.exists()
        else (shutil.which("opentelemetry-instrument") or "opentelemetry-instrument"),
        sys.executable,
        "-m",
        "flask",
        "--app",
        "chatspan.examples.dify_flask",
        "run",
        "--port",
        str(port),
    ]
    env = {
        **os.environ,
        "CHATSPAN_DATABASE_URL": database_url,
        "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "chatspan_postgres"),
        "OTEL_SERVICE_NAME": "dify-api-demo",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    print(
        "  starting the example app: opentelemetry-instrument "
        f"flask --app chatspan.examples.dify_flask run --port {port}"
    )
    with log_path.open("wb") as log:
        # The command is this installation's own launcher and Python: nothing from input.
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


def _serving(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/parameters", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition: Callable[[], bool], timeout: float, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"timed out waiting for {what}; the app said:\n{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.2)


def _counts(engine) -> tuple[int, int]:
    with engine.connect() as connection:
        return (
            connection.scalar(select(func.count()).select_from(dify_logs)),
            connection.scalar(select(func.count()).select_from(error)),
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _short(text: str | None, limit: int = 48) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
