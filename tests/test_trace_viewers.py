"""A chat in a real trace viewer: the example app exports OTLP to Arize Phoenix (run
from its own virtualenv, bound to 127.0.0.1), and Phoenix's API shows the chat span
with its input, output, session and user."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dify_client import ChatClient

from servers import APP_KEY, answers, clean_env, free_port, run_app, run_process, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent
PHOENIX = Path(os.environ.get("CHATSPAN_PHOENIX", ROOT / ".venv-phoenix" / "bin" / "phoenix"))


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory) -> Iterator[str]:
    if not PHOENIX.exists():
        reason = (
            f"Arize Phoenix is not installed at {PHOENIX} (python3 -m venv .venv-phoenix && "
            ".venv-phoenix/bin/pip install arize-phoenix, or set CHATSPAN_PHOENIX)"
        )
        if os.environ.get("CHATSPAN_REQUIRE_PHOENIX") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = clean_env(
        PHOENIX_WORKING_DIR=str(work),
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(free_port()),
    )
    command = [str(PHOENIX), "serve"]
    with run_process(
        command, env, work / "phoenix.log", port, answers("/healthz"), what="Phoenix", timeout=180
    ) as server:
        yield server.base_url


def test_phoenix_shows_the_chat_with_input_output_session_and_user(phoenix, tmp_path):
    env = clean_env(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{phoenix}/v1/traces",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="dify-api",
    )
    with run_app("uvicorn", tmp_path, env) as app:
        client = ChatClient(APP_KEY)
        client.base_url = f"{app.base_url}/v1"
        response = client.create_chat_message(
            {}, "What does Phoenix show?", "phoenix-user", "streaming"
        )
        events = [
            json.loads(line[5:]) for line in response.iter_lines() if line.startswith(b"data:")
        ]
        answer = "".join(e["answer"] for e in events if e["event"] in ("message", "agent_message"))

        def chat_span():
            spans = httpx.get(f"{phoenix}/v1/projects/default/spans", params={"limit": 100}).json()[
                "data"
            ]
            return next(
                (s for s in spans if s["attributes"].get("user.id") == "phoenix-user"), None
            )

        span = wait_for(chat_span, timeout=30, what="the chat span in Phoenix")
    attributes = span["attributes"]
    assert span["span_kind"] == "LLM"
    assert attributes["input.value"] == "What does Phoenix show?"
    assert attributes["output.value"] == answer
    assert attributes["session.id"] == events[0]["conversation_id"]
    assert attributes["gen_ai.conversation.id"] == events[0]["conversation_id"]
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert json.loads(attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == answer
