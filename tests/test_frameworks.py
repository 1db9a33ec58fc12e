"""ChatInstrumentor inside one process, with Flask and FastAPI apps and their own
OpenTelemetry instrumentors in either order: span parents, request bodies, streams."""

from __future__ import annotations

import asyncio
import hashlib
import json

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from flask import Flask, Response, request
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.trace import SpanKind

from chatspan.instrumentation import ChatInstrumentor, ChatRoute
from chatspan.instrumentation.routing import CHAT
from chatspan.instrumentation.shapes.dify import DIFY
from chatspan.records import SpanData, map_spans

from spans import SpanRecorder

CHAT_BODY = {"query": "hello", "user": "ann", "response_mode": "streaming", "inputs": {}}
SSE = (
    b'data: {"event": "message", "answer": "Hi ", "conversation_id": "c1", "message_id": "m1"}\n\n'
    b'data: {"event": "message", "answer": "Ann"}\n\n'
    b'data: {"event": "message_end", "metadata": {"usage": {"prompt_tokens": 1, '
    b'"completion_tokens": 2, "total_tokens": 3}}}\n\n'
)


def _flask_app(recorder: SpanRecorder) -> Flask:
    app = Flask("test")

    @app.post("/v1/chat-messages")
    def chat():
        def stream():
            with recorder.tracer.start_as_current_span("model call"):
                pass
            yield SSE

        return Response(stream(), mimetype="text/event-stream")

    @app.post("/echo-hash")
    def echo_hash():
        return {"sha256": hashlib.sha256(request.get_data()).hexdigest()}

    return app


@pytest.fixture
def recorder():
    recorder = SpanRecorder()
    yield recorder
    for instrumentor in (ChatInstrumentor(), FlaskInstrumentor(), FastAPIInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def _by_name(recorder: SpanRecorder) -> dict:
    return {span.name: span for span in recorder.spans()}


@pytest.mark.parametrize("order", ["flask first", "chatspan first"])
def test_flask_chat_span_is_a_child_of_the_server_span_in_either_order(recorder, order):
    app = _flask_app(recorder)
    steps = [
        lambda: FlaskInstrumentor().instrument_app(app, tracer_provider=recorder.provider),
        lambda: ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider),
    ]
    for step in steps if order == "flask first" else reversed(steps):
        step()
    response = app.test_client().post("/v1/chat-messages", json=CHAT_BODY)
    assert response.data == SSE
    spans = _by_name(recorder)
    chat = next(s for s in spans.values() if s.attributes.get("gen_ai.operation.name") == "chat")
    server = next(s for s in spans.values() if s.kind is SpanKind.SERVER)
    model = spans["model call"]
    assert chat.parent.span_id == server.context.span_id
    assert model.parent.span_id == chat.context.span_id  # work done in the stream
    assert chat.attributes["output.value"] == "Hi Ann"
    assert chat.attributes["gen_ai.usage.output_tokens"] == 2
    assert chat.end_time >= model.end_time


def test_apps_created_before_global_instrumentation_are_covered(recorder):
    app = _flask_app(recorder)  # exists before instrument()
    ChatInstrumentor().instrument(tracer_provider=recorder.provider)
    app.test_client().post("/v1/chat-messages", json=CHAT_BODY).get_data()
    ChatInstrumentor().uninstrument()
    app.test_client().post("/v1/chat-messages", json=CHAT_BODY).get_data()
    chats = [s for s in recorder.spans() if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 1
    assert chats[0].parent is None  # no server instrumentation: the chat span is the root


def test_request_body_reaches_the_app_byte_for_byte(recorder, monkeypatch):
    monkeypatch.setenv("CHATSPAN_MAX_REQUEST_BYTES", "1000")
    app = _flask_app(recorder)
    route = ChatRoute("POST", "/echo-hash", CHAT, DIFY)
    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider, routes=[route])
    client = app.test_client()
    small = json.dumps({"query": "héllo \u2603", "user": "u"}).encode() + b"  \n"
    large = json.dumps({"query": "x" * 5000, "user": "u"}).encode()
    for body in (small, large, b"not json at all"):
        answer = client.post("/echo-hash", data=body, content_type="application/json").json
        assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    first, second, third = [
        s for s in recorder.spans() if s.attributes.get("gen_ai.operation.name")
    ]
    assert first.attributes["input.value"] == "héllo \u2603"
    assert second.attributes["chatspan.request.captured"] is False
    assert "input.value" not in second.attributes
    assert "input.value" not in third.attributes


def test_messages_attributes_are_json_of_the_conversation_whatever_the_text(recorder):
    app = Flask("openai")
    tricky = 'say "hi" \\ then\nnew line, tab\t, bell \x07, é, \u2603, \U0001f600'

    @app.post("/v1/chat/completions")
    def completions():
        return {"id": "c1", "choices": [{"message": {"role": "assistant", "content": tricky}}]}

    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    messages = [
        {"role": "system", "content": "be brief"},
        {"content": tricky},
        {"role": "user", "content": [{"type": "text", "text": tricky}]},
    ]
    client = app.test_client()
    client.post("/v1/chat/completions", json={"model": "m", "messages": messages}).get_data()
    (span,) = recorder.spans()

    def parts(role, text):
        return {"role": role, "parts": [{"type": "text", "content": text}]}

    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        parts("system", "be brief"),
        parts("user", tricky),
        parts("user", tricky),
    ]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [parts("assistant", tricky)]


def test_an_exception_inside_a_stream_is_on_the_chat_span(recorder):
    app = Flask("broken")

    @app.post("/v1/chat-messages")
    def chat():
        def stream():
            yield b'data: {"event": "message", "answer": "par"}\n\n'
            raise ConnectionResetError("model connection dropped")

        return Response(stream(), mimetype="text/event-stream")

    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    with pytest.raises(ConnectionResetError):
        app.test_client().post("/v1/chat-messages", json=CHAT_BODY).get_data()
    (span,) = recorder.spans()
    assert span.status.is_ok is False
    assert [e.attributes["exception.type"] for e in span.events] == ["ConnectionResetError"]
    assert span.attributes["output.value"] == "par"


def _fastapi_app(recorder: SpanRecorder) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat-messages")
    async def chat(request: Request):
        body = await request.body()
        assert json.loads(body) == CHAT_BODY

        async def stream():
            with recorder.tracer.start_as_current_span("model call"):
                await asyncio.sleep(0)
            yield SSE

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.post("/v1/boom")
    async def boom():
        raise KeyError("missing setting")

    return app


def _post(app: FastAPI, path: str, body: dict) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.post(path, json=body)

    return asyncio.run(run())


@pytest.mark.parametrize("order", ["fastapi first", "chatspan first"])
def test_fastapi_chat_span_is_a_child_of_the_server_span_in_either_order(recorder, order):
    app = _fastapi_app(recorder)
    steps = [
        lambda: FastAPIInstrumentor.instrument_app(app, tracer_provider=recorder.provider),
        lambda: ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider),
    ]
    for step in steps if order == "fastapi first" else reversed(steps):
        step()
    response = _post(app, "/v1/chat-messages", CHAT_BODY)
    assert response.content == SSE
    spans = recorder.spans()
    chat = next(s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat")
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    model = next(s for s in spans if s.name == "model call")
    assert chat.parent.span_id == server.context.span_id
    assert model.parent.span_id == chat.context.span_id
    assert chat.attributes["output.value"] == "Hi Ann"
    assert chat.attributes["user.id"] == "ann"
    assert chat.attributes["gen_ai.conversation.id"] == "c1"


def test_fastapi_error_on_another_route_is_recorded_once_per_span(recorder):
    app = _fastapi_app(recorder)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=recorder.provider)
    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    assert _post(app, "/v1/boom", {}).status_code == 500
    errors = map_spans(SpanData.from_sdk(s) for s in recorder.spans()).errors
    assert [e.type_error for e in errors] == ["KeyError"]
