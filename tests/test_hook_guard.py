"""A bug of chatspan's never reaches a request: each hook that runs inside the app's
calls is made to fail (chatspan's own internals raise), and the app's response stays
byte for byte what the app answers without chatspan, its own exceptions included,
while the log says once per place what went wrong."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable

import gevent
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from flask import Flask, Response, jsonify
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from chatspan.instrumentation import (
    ChatInstrumentor,
    ChatRoute,
    flask_hooks,
    greenlets,
    guard,
    model_calls,
    starlette_hooks,
    threads,
)
from chatspan.instrumentation.chat_call import ChatCall
from chatspan.instrumentation.routing import CHAT, Router
from chatspan.instrumentation.shapes.dify import DIFY

from spans import SpanRecorder

CHAT_BODY = {"query": "hello", "user": "ann", "response_mode": "streaming", "inputs": {}}
SSE = [
    b'data: {"event": "message", "message_id": "m1", "conversation_id": "c1", "answer": "Hi"}\n\n',
    b'data: {"event": "message", "answer": " Ann"}\n\n',
    b'data: {"event": "message_end", "metadata": {"usage": {"total_tokens": 3}}}\n\n',
]
# The app's own work inside a chat, one kind per route: what chatspan's other hooks see.
WORK_ROUTE = ChatRoute("POST", "/work/<kind>", CHAT, DIFY)
ANSWERS = {
    "threads": ["thread", "pool"],
    "greenlets": "greenlet",
    "orm-load": "Support bot",
    "orm-init": "gpt-4o-mini",
    "http": {"id": "r1"},
    "span": "called",
}


class Base(DeclarativeBase):
    pass


class App(Base):  # Dify's apps table, as far as chatspan reads it
    __tablename__ = "apps"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)


class Message(Base):  # Dify's messages table, as far as chatspan reads it
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[str] = mapped_column(String)
    model_provider: Mapped[str] = mapped_column(String)


def _app_work(recorder: SpanRecorder) -> dict[str, Callable[[], object]]:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(App(id="app-1", name="Support bot"))
        session.commit()

    def in_thread() -> object:
        found: list[str] = []
        thread = threading.Thread(target=found.append, args=("thread",))
        thread.start()
        thread.join()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            found.append(pool.submit(str, "pool").result())
        return found

    def load_app() -> object:
        with Session(engine) as session:
            app = session.get(App, "app-1")
            return app.name if app is not None else None

    def make_message() -> object:
        return Message(model_id="gpt-4o-mini", model_provider="openai").model_id

    def call_model() -> object:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"id": "r1"}))
        with httpx.Client(transport=transport) as client:
            url = "http://models.test/v1/chat/completions"
            return client.post(url, json={"model": "gpt-4o-mini"}).json()

    def model_span() -> object:
        with recorder.tracer.start_as_current_span(
            "model call", attributes={"gen_ai.request.model": "gpt-4o-mini"}
        ):
            return "called"

    return {
        "threads": in_thread,
        "greenlets": lambda: gevent.spawn(str, "greenlet").get(),
        "orm-load": load_app,
        "orm-init": make_message,
        "http": call_model,
        "span": model_span,
    }


def _flask_app(recorder: SpanRecorder) -> Flask:
    app = Flask("guarded")
    work = _app_work(recorder)

    @app.post("/v1/chat-messages")
    def chat():
        return Response(iter(SSE), mimetype="text/event-stream")

    @app.post("/v1/completion-messages")
    def failing_chat():
        raise ValueError("the app's own failure")

    @app.post("/plain")
    def failing_plain():
        raise ValueError("the app's own failure, outside a chat")

    @app.post("/work/<kind>")
    def app_work(kind: str):
        return jsonify({kind: work[kind]()})

    return app


def _starlette_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat-messages")
    async def chat():
        return StreamingResponse(iter(SSE), media_type="text/event-stream")

    @app.post("/v1/completion-messages")
    async def failing_chat():
        raise ValueError("the app's own failure")

    @app.post("/plain")
    async def failing_plain():
        raise ValueError("the app's own failure, outside a chat")

    return app


def _serve(
    framework: str, path: str, *, instrumented: bool, then: Callable[[], None] = lambda: None
) -> list[object]:
    """What the app answers to the same request twice: status, headers, body bytes, or
    the exception that reached the server. `then` runs once the app is instrumented."""
    recorder = SpanRecorder()
    app = _flask_app(recorder) if framework == "flask" else _starlette_app()
    if instrumented:
        ChatInstrumentor().instrument_app(
            app, tracer_provider=recorder.provider, routes=[WORK_ROUTE]
        )
    then()
    answers: list[object] = []
    for _ in range(2):
        if framework == "flask":
            response = app.test_client().post(path, json=CHAT_BODY)
            answers.append((response.status, sorted(response.headers.items()), response.data))
            continue
        try:
            response = TestClient(app).post(path, json=CHAT_BODY)
        except Exception as exception:  # the app's own, raised to the server
            answers.append(("raised", type(exception), str(exception)))
        else:
            answers.append((response.status_code, response.headers.multi_items(), response.content))
    if instrumented:
        ChatInstrumentor.uninstrument_app(app)
    return answers


class _Broken:
    """A module's OpenTelemetry context API, as a bug of chatspan's would call it."""

    def __getattr__(self, name: str) -> Callable[..., object]:
        def fail(*_args: object, **_kwargs: object) -> object:
            raise RuntimeError(f"chatspan bug in {name} (injected)")

        return fail


def _raising(*_args: object, **_kwargs: object) -> object:
    raise RuntimeError("chatspan bug (injected)")


def _break_method(owner: type, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda monkeypatch: monkeypatch.setattr(owner, name, _raising)


def _break_property(owner: type, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda monkeypatch: monkeypatch.setattr(owner, name, property(_raising))


def _break_module(module: object, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda monkeypatch: monkeypatch.setattr(module, name, _raising)


def _break_context_api(module: object) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda monkeypatch: monkeypatch.setattr(module, "otel_context", _Broken())


# (framework, path, what breaks, the places that say so)
CASES = {
    "flask call": (
        "flask",
        "/v1/chat-messages",
        _break_method(Router, "match"),
        {"Flask.__call__"},
    ),
    "flask response start": (
        "flask",
        "/v1/chat-messages",
        _break_method(ChatCall, "response_started"),
        {"Flask.__call__"},
    ),
    "flask dispatch and relay": (
        "flask",
        "/v1/chat-messages",
        _break_property(ChatCall, "context"),
        {"Flask.dispatch_request", "the Flask response relay"},
    ),
    "flask exception handler and signal": (
        "flask",
        "/v1/completion-messages",
        _break_module(flask_hooks, "_record"),
        {"Flask.handle_user_exception", "Flask's got_request_exception signal"},
    ),
    "flask exception outside a chat": (
        "flask",
        "/plain",
        _break_module(flask_hooks, "record_outside_chat"),
        {"Flask.handle_user_exception"},
    ),
    "flask relay reading": (
        "flask",
        "/v1/chat-messages",
        _break_method(ChatCall, "body_chunks"),
        {"the Flask response relay"},
    ),
    "flask response end": (
        "flask",
        "/v1/chat-messages",
        _break_method(ChatCall, "finish"),
        {"the end of a Flask response"},
    ),
    "threads": (
        "flask",
        "/work/threads",
        _break_context_api(threads),
        {"the threads' context carrier"},
    ),
    "greenlets": (
        "flask",
        "/work/greenlets",
        _break_context_api(greenlets),
        {"the greenlets' context carrier"},
    ),
    "orm load": (
        "flask",
        "/work/orm-load",
        _break_method(ChatCall, "learn_app"),
        {"the ORM's load event"},
    ),
    "orm init": (
        "flask",
        "/work/orm-init",
        _break_method(ChatCall, "learn_model"),
        {"the ORM's init event"},
    ),
    "http client": (
        "flask",
        "/work/http",
        _break_module(model_calls, "model_of_request"),
        {"httpx.Client.send"},
    ),
    "span processor start": (
        "flask",
        "/work/span",
        _break_context_api(model_calls),
        {"SpansInsideChats.on_start"},
    ),
    "span processor end": (
        "flask",
        "/work/span",
        _break_method(ChatCall, "learn_model"),
        {"SpansInsideChats.on_end"},
    ),
    "starlette call": (
        "starlette",
        "/v1/chat-messages",
        _break_module(starlette_hooks, "add_middleware"),
        {"Starlette.__call__"},
    ),
    "starlette middleware": (
        "starlette",
        "/v1/chat-messages",
        _break_method(Router, "match"),
        {"ChatMiddleware"},
    ),
    "starlette relay reading": (
        "starlette",
        "/v1/chat-messages",
        _break_method(ChatCall, "body_chunks"),
        {"ChatMiddleware's response relay"},
    ),
    "starlette response end": (
        "starlette",
        "/v1/chat-messages",
        _break_method(ChatCall, "finish"),
        {"ChatMiddleware"},
    ),
    "starlette app exception": (
        "starlette",
        "/v1/completion-messages",
        _break_method(ChatCall, "record_exception"),
        {"ChatMiddleware"},
    ),
    "starlette exception outside a chat": (
        "starlette",
        "/plain",
        _break_module(starlette_hooks, "record_outside_chat"),
        {"ChatMiddleware"},
    ),
}


@pytest.mark.parametrize(("framework", "path", "breaks", "places"), CASES.values(), ids=CASES)
def test_a_failing_hook_leaves_the_apps_answer_unchanged_and_is_logged_once(
    framework, path, breaks, places, monkeypatch, caplog
):
    expected = _serve(framework, path, instrumented=False)
    monkeypatch.setattr(guard, "_reported", set())

    assert _serve(framework, path, instrumented=True, then=lambda: breaks(monkeypatch)) == expected

    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert sorted(r.getMessage() for r in logged) == sorted(
        f"chatspan: internal error in {place} (the app is unaffected)" for place in places
    )
    assert all("injected" in str(r.exc_info[1]) for r in logged)  # with the traceback


def test_without_a_failure_nothing_is_logged_and_the_chat_is_recorded(monkeypatch, caplog):
    """The control: the same requests with chatspan working."""
    monkeypatch.setattr(guard, "_reported", set())
    recorder = SpanRecorder()
    app = _flask_app(recorder)
    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider, routes=[WORK_ROUTE])
    try:
        client = app.test_client()
        assert client.post("/v1/chat-messages", json=CHAT_BODY).data == b"".join(SSE)
        for kind in ("threads", "greenlets", "orm-load", "orm-init", "http", "span"):
            assert client.post(f"/work/{kind}", json=CHAT_BODY).json == {kind: ANSWERS[kind]}
    finally:
        ChatInstrumentor.uninstrument_app(app)
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]
    chats = [s for s in recorder.spans() if s.attributes.get("gen_ai.operation.name") == CHAT]
    assert len(chats) == 7
    assert chats[0].attributes["output.value"] == "Hi Ann"
    # What each hook brought the chat: the app's name from its row, the model it called.
    assert chats[3].attributes["dify.app.name"] == "Support bot"
    assert [chats[i].attributes["gen_ai.request.model"] for i in (4, 5, 6)] == ["gpt-4o-mini"] * 3
    (model_call,) = [s for s in recorder.spans() if s.name == "model call"]
    assert model_call.attributes["chatspan.inside_chat"] is True
