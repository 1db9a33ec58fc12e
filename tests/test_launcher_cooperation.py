"""chatspan beside another OpenTelemetry set-up: the app's own TracerProvider, Dify 1.x's
own ext_otel, opentelemetry-distro's distro and configurator. Chats are recorded
whichever set the SDK up, and nobody else's tracing is replaced."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

from chatspan.examples import dify_records
from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade

from rows import rows_where
from servers import BIN, answers, clean_env, free_port, run_process, wait_for

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
HEADERS = {"Authorization": f"Bearer {dify_records.APPS[0][3]}"}


def _chat(base_url: str) -> str:
    query = f"who records me? q{uuid.uuid4().hex[:8]}"  # a letter: digits may be redacted
    body = {"inputs": {}, "query": query, "user": "u", "response_mode": "blocking"}
    assert httpx.post(f"{base_url}/v1/chat-messages", headers=HEADERS, json=body).status_code == 200
    return query


def _store(tmp_path: Path) -> str:
    """A migrated SQLite store, so that a test can look for rows before the first export."""
    url = f"sqlite:///{tmp_path / 'chats.db'}"
    engine = make_engine(url, timeout_s=30)
    upgrade(engine)
    engine.dispose()
    return url


def _recorded(url: str, query: str) -> dict:
    (row,) = wait_for(lambda: rows_where(url, "dify_logs", input_text=query), what="the chat's row")
    return row


def test_an_app_s_own_tracer_provider_gains_chatspan_s_exporter(tmp_path):
    """The app set a TracerProvider before chatspan's instrumentation started: chatspan
    adds its exporter to it, and the app's own exporter still gets every span."""
    url = _store(tmp_path)
    script = textwrap.dedent(
        """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from chatspan.examples import dify_flask, dify_records
        from chatspan.instrumentation import ChatInstrumentor

        apps_own = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(apps_own))
        trace.set_tracer_provider(provider)
        ChatInstrumentor().instrument()
        assert trace.get_tracer_provider() is provider  # not replaced
        client = dify_flask.create_app().test_client()
        key = dify_records.APPS[0][3]
        body = {"inputs": {}, "query": "mine", "user": "u", "response_mode": "blocking"}
        answer = client.post("/v1/chat-messages", json=body, headers={"Authorization": "Bearer " + key})
        answer.get_data()  # read to its end: the chat span ends with its last byte
        provider.shutdown()  # flushes chatspan's exporter too
        print(json.dumps([span.name for span in apps_own.get_finished_spans()]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=clean_env(CHATSPAN_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["chat Support Bot"]
    assert _recorded(url, "mine")["app_name"] == "Support Bot"


def test_dify_s_own_opentelemetry_keeps_its_spans_and_chats_are_recorded(tmp_path):
    """Dify 1.x with ENABLE_OTEL=true sets its own provider when the app is created, after
    the launcher did: its processor joins the launcher's provider, so both see the chat."""
    url = _store(tmp_path)
    port = free_port()
    command = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "flask"),
        "--app",
        "dify_otel_app",
        "run",
        "--port",
        str(port),
    ]
    env = clean_env(
        CHATSPAN_DATABASE_URL=url,
        OTEL_BSP_SCHEDULE_DELAY="100",
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    )
    log = tmp_path / "app.log"
    with run_process(command, env, log, port, answers("/v1/parameters"), what="the app") as app:
        query = _chat(app.base_url)
        assert _recorded(url, query)["status"] == "ok"
        wait_for(lambda: '"name": "chat Support Bot"' in app.log(), what="Dify's own exporter")


@pytest.mark.parametrize(
    ("distro", "configurator"),
    [("distro", "configurator"), ("distro", "chatspan"), ("chatspan", "configurator")],
)
def test_beside_opentelemetry_distro_chats_are_recorded_whichever_loads(
    tmp_path, distro, configurator
):
    if importlib.util.find_spec("opentelemetry.distro") is None:
        if os.environ.get("CHATSPAN_REQUIRE_OTEL_DISTRO") == "1":
            pytest.fail("opentelemetry-distro is not installed (CHATSPAN_REQUIRE_OTEL_DISTRO=1)")
        pytest.skip("opentelemetry-distro is not installed here; Dify 1.13.3's pin job has it")
    url = _store(tmp_path)
    port = free_port()
    command = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "flask"),
        "--app",
        "chatspan.examples.dify_flask",
        "run",
        "--port",
        str(port),
    ]
    env = clean_env(
        CHATSPAN_DATABASE_URL=url,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_PYTHON_DISTRO=distro,
        OTEL_PYTHON_CONFIGURATOR=configurator,
        # the other distro's default exporters send OTLP to localhost: nobody listens
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
    )
    log = tmp_path / "app.log"
    with run_process(command, env, log, port, answers("/v1/parameters"), what="the app") as app:
        query = _chat(app.base_url)
        assert _recorded(url, query)["app_name"] == "Support Bot"
