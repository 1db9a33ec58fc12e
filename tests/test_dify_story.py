"""The rows tell the story Dify's own console tells: one app id whatever the route,
web-app and console users, model outages and failed nodes as one error each, errors
inside a chat belonging to it, refused requests that are no chats, the model Dify
called, and times.

The example Dify-shaped Flask app (chatspan.examples.dify_flask) answers as Dify does
(auth, error bodies, streams) and loads its apps and end users like Dify's auth
decorators; it runs in this process under ChatInstrumentor, with a real SDK tracer.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from flask import Flask, Response
from opentelemetry.trace import Status, StatusCode

from chatspan import semconv as sc
from chatspan.examples import dify_flask, dify_records, dify_replies
from chatspan.instrumentation import ChatInstrumentor
from chatspan.records import (
    ChatRecord,
    ErrorRecord,
    MappedBatch,
    SpanData,
    join_errors_to_chats,
    map_spans,
)
from chatspan.store import queries
from chatspan.store.engine import make_engine
from chatspan.store.queries import ErrorFilters, Paging, Window
from chatspan.store.writer import RecordWriter

from rows import fetch_rows
from spans import SpanRecorder

SUPPORT_BOT, PLANNER, WEATHER = (app[0] for app in dify_records.APPS)
CHAT_KEY, PLANNER_KEY, WEATHER_KEY = (app[3] for app in dify_records.APPS)


class Dify:
    """The example app under the instrumentation, and the rows its spans become."""

    def __init__(self, app: Flask, recorder: SpanRecorder) -> None:
        self.client = app.test_client()
        self.recorder = recorder

    def service_api(self, body: dict, *, key: str = CHAT_KEY, path: str = "/v1/chat-messages"):
        return _read(self.client.post(path, json=body, headers={"Authorization": f"Bearer {key}"}))

    def passport(self, site: str = "support") -> str:
        return self.client.get("/api/passport", headers={"X-App-Code": site}).json["access_token"]

    def web_app(self, body: dict, passport: str, path: str = "/api/chat-messages"):
        headers = {"Authorization": f"Bearer {passport}"}
        return _read(self.client.post(path, json=body, headers=headers))

    def console(self, body: dict, app_id: str = SUPPORT_BOT):
        _account, email, password = dify_records.ACCOUNT
        login = self.client.post("/console/api/login", json={"email": email, "password": password})
        token = login.json["data"]["access_token"]
        return _read(
            self.client.post(
                f"/console/api/apps/{app_id}/chat-messages",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        )

    def rows(self) -> MappedBatch:
        batch = map_spans(SpanData.from_sdk(span) for span in self.recorder.spans())
        join_errors_to_chats(batch)
        return batch

    def chat_of(self, query: str) -> ChatRecord:
        (chat,) = [c for c in self.rows().chats if c.input_text == query]
        return chat

    def errors_of(self, chat: ChatRecord) -> list[ErrorRecord]:
        return [e for e in self.rows().errors if e.trace_id == chat.trace_id]


def _read(response):
    """The whole response, as a client reads it: the chat ends with its last byte."""
    response.get_data()
    return response


@pytest.fixture
def recorder():
    recorder = SpanRecorder()
    yield recorder
    if ChatInstrumentor().is_instrumented_by_opentelemetry:
        ChatInstrumentor().uninstrument()


@pytest.fixture
def dify(recorder) -> Dify:
    app = dify_flask.create_app()
    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    return Dify(app, recorder)


def _ask(query: str, mode: str = "blocking", **more) -> dict:
    return {"inputs": {}, "query": query, "response_mode": mode, **more}


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


# 1. One app, one id -------------------------------------------------------------------


def test_every_route_of_an_app_records_dify_s_app_id_and_name(dify):
    dify.service_api(_ask("via the service API", user=_user()))
    dify.web_app(_ask("via the web app"), dify.passport("support"))
    dify.console(_ask("via the console debugger"))
    chats = dify.rows().chats
    assert len(chats) == 3
    assert {c.app_id for c in chats} == {SUPPORT_BOT}
    assert {c.app_name for c in chats} == {"Support Bot"}
    service = next(c for c in chats if c.input_text == "via the service API")
    digest = service.attributes[sc.DIFY_API_KEY_DIGEST]
    assert digest.startswith("key-") and CHAT_KEY[4:] not in json.dumps(service.attributes)
    assert {c.attributes[sc.DIFY_INVOKE_FROM] for c in chats} == {
        "service-api",
        "web-app",
        "debugger",
    }


def test_a_rotated_key_keeps_the_app(dify):
    rotated = "app-exampleRotatedKey0123456789"
    with dify_records.Session() as session, session.begin():
        session.merge(dify_records.ApiToken(token=rotated, app_id=SUPPORT_BOT))
    dify.service_api(_ask("old key", user=_user()))
    dify.service_api(_ask("new key", user=_user()), key=rotated)
    old, new = dify.chat_of("old key"), dify.chat_of("new key")
    assert old.app_id == new.app_id == SUPPORT_BOT
    assert old.attributes[sc.DIFY_API_KEY_DIGEST] != new.attributes[sc.DIFY_API_KEY_DIGEST]


def _bare_dify_app() -> Flask:
    """A Dify-shaped app that loads nothing through SQLAlchemy: chatspan outside Dify."""
    app = Flask("outside-dify")

    @app.post("/v1/chat-messages")
    @app.post("/api/chat-messages")
    def chat():
        from flask import request

        return dify_replies.chat_blocking(request.get_json())

    return app


def test_outside_dify_the_passport_names_the_app_and_the_key_digest_is_the_fallback(recorder):
    app = _bare_dify_app()
    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    passport = Dify(dify_flask.create_app(), recorder).passport("planner")
    bare = Dify(app, recorder)
    bare.web_app(_ask("web app, no Dify objects"), passport)
    bare.service_api(_ask("service API, no Dify objects", user="u1"))
    web, service = (
        bare.chat_of("web app, no Dify objects"),
        bare.chat_of("service API, no Dify objects"),
    )
    assert web.app_id == PLANNER
    claims = dify_records.jwt.decode(passport, options={"verify_signature": False})
    assert web.user_id == claims["end_user_id"]
    assert service.app_id == service.attributes[sc.DIFY_API_KEY_DIGEST]
    assert service.app_id.startswith("key-")


# 2. Web-app and console users ---------------------------------------------------------


def test_web_app_chats_carry_the_end_user_s_session_and_console_chats_the_account(dify):
    passport = dify.passport("support")
    dify.web_app(_ask("who am I on the web?"), passport)
    dify.console(_ask("who am I in the console?", "streaming"))
    claims = dify_records.jwt.decode(passport, options={"verify_signature": False})
    with dify_records.Session() as session:
        end_user = session.get(dify_records.EndUser, claims["end_user_id"])
    web = dify.chat_of("who am I on the web?")
    assert web.user_id == end_user.session_id != claims["end_user_id"]
    assert dify.chat_of("who am I in the console?").user_id == dify_records.ACCOUNT[0]


# 3. Model outages are errors ----------------------------------------------------------


def test_a_model_outage_is_one_error_blocking_or_streaming_and_fingerprints_alike(dify):
    user = _user()
    blocking = dify.service_api(_ask("hello [model-down]", user=user))
    streaming = dify.service_api(_ask("hello again [model-down]", "streaming", user=user))
    assert blocking.status_code == 400 and blocking.json["code"] == "completion_request_error"
    assert b'"event": "error"' in streaming.data
    chats = [dify.chat_of("hello [model-down]"), dify.chat_of("hello again [model-down]")]
    errors = [dify.errors_of(chat) for chat in chats]
    assert [c.status for c in chats] == ["error", "error"]
    assert [[e.type_error for e in found] for found in errors] == [
        ["dify.completion_request_error"],
        ["dify.completion_request_error"],
    ]
    (first,), (second,) = errors
    assert first.fingerprint == second.fingerprint
    assert first.error_message == dify_replies.MODEL_DOWN
    assert (first.user_id, first.app_id) == (user, SUPPORT_BOT)


def test_a_caller_mistake_fails_the_chat_without_an_error_row(dify):
    dify.service_api({"inputs": {}, "query": "", "user": _user(), "response_mode": "blocking"})
    (chat,) = dify.rows().chats
    assert chat.status == "error"
    assert dify.rows().errors == []


# 4. One cause, one row, one fingerprint -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "send", "node"),
    [
        (
            "advanced chat",
            lambda d, mode: d.service_api(
                _ask("plan [node-fail]", mode, user="u"), key=PLANNER_KEY
            ),
            "Parse order",
        ),
        (
            "workflow",
            lambda d, mode: d.service_api(
                {"inputs": {"fail": True}, "user": "u", "response_mode": mode},
                key=WEATHER_KEY,
                path="/v1/workflows/run",
            ),
            "Fetch weather",
        ),
    ],
)
def test_a_failing_node_is_one_error_blocking_or_streaming(dify, name, send, node):
    send(dify, "blocking")
    blocking_rows = dify.rows()
    send(dify, "streaming")
    rows = dify.rows()
    assert len(rows.chats) == 2 and len(blocking_rows.chats) == 1
    by_mode = {chat.response_mode: dify.errors_of(chat) for chat in rows.chats}
    assert [len(found) for found in by_mode.values()] == [1, 1], name
    (blocking,), (streaming,) = by_mode["blocking"], by_mode["streaming"]
    assert blocking.type_error == streaming.type_error == sc.DIFY_WORKFLOW_FAILED
    assert blocking.fingerprint == streaming.fingerprint
    assert blocking.error_message == streaming.error_message
    assert "Run failed" not in blocking.error_message
    assert streaming.node == node  # the stream names the node; the blocking answer does not
    assert blocking.stacktrace is None  # Dify's ValueError is the report, not another cause
    # The spans say it once too: a trace viewer shows one exception per failed run.
    events = [[e.name for e in span.events] for span in dify.recorder.spans() if span.events]
    assert events == [["exception"], ["exception"]]


def test_the_same_failed_run_fingerprints_alike_on_the_service_api_and_the_web_app(dify):
    body = {"inputs": {"fail": True}, "response_mode": "streaming"}
    dify.service_api({**body, "user": "u"}, key=WEATHER_KEY, path="/v1/workflows/run")
    dify.web_app(body, dify.passport("weather"), path="/api/workflows/run")
    errors = dify.rows().errors
    assert len(errors) == 2
    assert len({e.fingerprint for e in errors}) == 1
    assert {e.route for e in errors} == {"/v1/workflows/run", "/api/workflows/run"}


# 6. Refused requests are not chats ----------------------------------------------------


def test_a_refused_request_is_no_chat(dify):
    refused = dify.service_api(_ask("let me in", user=_user()), key="app-notAKeyOfThisApp000000")
    assert refused.status_code == 401
    assert dify.rows().chats == [] and dify.rows().errors == []
    (span,) = dify.recorder.spans()
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 401
    assert span.status.status_code is not StatusCode.ERROR


# 7. The model -------------------------------------------------------------------------


def test_the_model_dify_records_for_the_chat_is_on_the_row(dify):
    dify.service_api(_ask("which model?", user=_user()))
    chat = dify.chat_of("which model?")
    assert (chat.model, chat.provider) == (dify_records.MODEL, dify_records.MODEL_PROVIDER)


def _app_calling_a_model(recorder: SpanRecorder, call) -> Flask:
    app = Flask("calls-a-model")

    @app.post("/v1/chat-messages")
    def chat():
        from flask import request

        call()
        return dify_replies.chat_blocking(request.get_json())

    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    return app


def test_a_genai_span_inside_the_chat_names_its_model(recorder):
    def call():
        attributes = {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
            sc.GEN_AI_PROVIDER_NAME: "openai",
        }
        with recorder.tracer.start_as_current_span("chat gpt-4o-mini", attributes=attributes):
            pass

    Dify(_app_calling_a_model(recorder, call), recorder).service_api(_ask("q", user="u"))
    (chat,) = map_spans(SpanData.from_sdk(s) for s in recorder.spans()).chats
    assert (chat.model, chat.provider) == ("gpt-4o-mini-2024-07-18", "openai")


def test_an_openai_compatible_call_made_in_a_worker_thread_names_the_model(recorder):
    import threading

    import httpx

    sent = []

    def model_api(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})

    def call():  # as Dify does: a thread per answer, calling the provider over HTTP
        def work():
            with httpx.Client(transport=httpx.MockTransport(model_api)) as client:
                client.post(
                    "http://models.internal/v1/chat/completions",
                    json={"model": "qwen2.5-7b", "messages": [{"role": "user", "content": "q"}]},
                )

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()

    Dify(_app_calling_a_model(recorder, call), recorder).service_api(_ask("q", user="u"))
    assert sent and sent[0]["model"] == "qwen2.5-7b"
    (chat,) = map_spans(SpanData.from_sdk(s) for s in recorder.spans()).chats
    assert (chat.model, chat.provider) == ("qwen2.5-7b", "openai")


# 8. Times -----------------------------------------------------------------------------


def _streaming_app(recorder: SpanRecorder, events) -> Flask:
    app = Flask("streams")

    @app.post("/v1/chat-messages")
    def chat():
        def stream():
            for delay, chunk in events:
                time.sleep(delay)
                yield chunk

        return Response(stream(), mimetype="text/event-stream")

    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    return app


def _event(**fields) -> bytes:
    return dify_replies.sse({**fields, "conversation_id": "c", "message_id": "m"})


def test_time_to_first_token_is_the_time_to_the_first_answer_piece(recorder):
    events = [
        (0.0, b"event: ping\n\n"),
        (0.0, _event(event="workflow_started", workflow_run_id="r")),
        (0.3, _event(event="message", answer="Hello")),
        (0.0, _event(event="message", answer=" there")),
        (0.0, _event(event="message_end", metadata={})),
    ]
    Dify(_streaming_app(recorder, events), recorder).service_api(_ask("q", "streaming", user="u"))
    (chat,) = map_spans(SpanData.from_sdk(s) for s in recorder.spans()).chats
    assert chat.output_text == "Hello there"
    assert 300 <= chat.time_to_first_token_ms < chat.latency_ms


def test_a_stream_without_an_answer_piece_has_no_time_to_first_token(recorder):
    events = [
        (0.0, b"event: ping\n\n"),
        (0.05, _event(event="workflow_started", workflow_run_id="r")),
        (0.0, _event(event="error", status=400, code="completion_request_error", message="down")),
    ]
    Dify(_streaming_app(recorder, events), recorder).service_api(_ask("q", "streaming", user="u"))
    (chat,) = map_spans(SpanData.from_sdk(s) for s in recorder.spans()).chats
    assert chat.status == "error"
    assert chat.time_to_first_token_ms is None


def test_workflow_rows_carry_the_run_id_as_their_message_id(dify):
    run_ids = set()
    for mode in ("blocking", "streaming"):
        body = {"inputs": {"city": "Oslo"}, "user": "u", "response_mode": mode}
        answer = dify.service_api(body, key=WEATHER_KEY, path="/v1/workflows/run")
        if mode == "blocking":
            run_ids.add(answer.json["workflow_run_id"])
        else:
            first = json.loads(answer.get_data().split(b"\n\n")[0].removeprefix(b"data: "))
            run_ids.add(first["workflow_run_id"])
    chats = dify.rows().chats
    assert len(run_ids) == 2
    assert {c.message_id for c in chats} == run_ids
    assert all(c.message_id == c.attributes[sc.DIFY_WORKFLOW_RUN_ID] for c in chats)


def test_a_failed_blocking_chat_keeps_the_conversation_it_was_asked_in(dify):
    conversation = str(uuid.uuid4())
    dify.service_api(_ask("fails [model-down]", user="u", conversation_id=conversation))
    chat = dify.chat_of("fails [model-down]")
    assert chat.conversation_id == conversation
    (error,) = dify.errors_of(chat)
    assert error.conversation_id == conversation


# 5. Errors inside a chat belong to the chat -------------------------------------------

CHAT_CONTEXT = {
    sc.GEN_AI_OPERATION_NAME: "chat",
    sc.USER_ID: "ann",
    sc.DIFY_APP_ID: SUPPORT_BOT,
    sc.GEN_AI_CONVERSATION_ID: "conv-1",
    sc.CHATSPAN_ROUTE: "/v1/chat-messages",
}


def _chat_with_a_failed_call(recorder: SpanRecorder, *, chat_ok: bool, call_failed: bool):
    """A chat span and, inside it, an HTTP client span that recorded a ConnectionError
    (as the requests instrumentation does); returns (call span, chat span)."""
    tracer = recorder.tracer
    with tracer.start_as_current_span("chat", attributes=CHAT_CONTEXT) as chat:
        with tracer.start_as_current_span("POST", record_exception=False) as call:
            call.record_exception(ConnectionError("connection refused by 10.0.0.7"))
            if call_failed:
                call.set_status(Status(StatusCode.ERROR))
        if not chat_ok:
            chat.set_status(Status(StatusCode.ERROR))
    call_span, chat_span = recorder.spans()[-2:]
    return SpanData.from_sdk(call_span), SpanData.from_sdk(chat_span)


@pytest.mark.parametrize("arrival", ["same batch", "error first", "chat first"])
def test_an_error_inside_a_chat_takes_its_context_in_any_batch_order(
    recorder, database_url, arrival
):
    writer = RecordWriter(make_engine(database_url, timeout_s=30))
    call, chat = _chat_with_a_failed_call(recorder, chat_ok=True, call_failed=True)
    batches = {
        "same batch": [[call, chat]],
        "error first": [[call], [chat]],
        "chat first": [[chat], [call]],
    }[arrival]
    for batch in batches:
        writer.write(batch)
    (error,) = fetch_rows(database_url, "error")
    assert (error["user_id"], error["app_id"], error["conversation_id"], error["route"]) == (
        "ann",
        SUPPORT_BOT,
        "conv-1",
        "/v1/chat-messages",
    )
    assert error["handled"] is True  # the chat ended ok: the app recovered


def test_an_error_inside_a_failed_chat_stays_an_error(recorder, database_url):
    writer = RecordWriter(make_engine(database_url, timeout_s=30))
    call, chat = _chat_with_a_failed_call(recorder, chat_ok=False, call_failed=True)
    writer.write([call])
    writer.write([chat])
    (error,) = fetch_rows(database_url, "error")
    assert error["user_id"] == "ann" and error["handled"] is False


def test_an_exception_whose_span_did_not_fail_is_handled_and_counted_only_on_request(
    recorder, database_url
):
    call, _chat = _chat_with_a_failed_call(recorder, chat_ok=False, call_failed=False)
    RecordWriter(make_engine(database_url, timeout_s=30)).write([call])
    engine = make_engine(database_url, timeout_s=30)
    with engine.connect() as connection:
        unhandled = queries.list_errors(connection, ErrorFilters(), Paging())
        handled = queries.list_errors(connection, ErrorFilters(handled=True), Paging())
        groups, _more = queries.error_groups(connection, ErrorFilters())
    now = datetime.now(timezone.utc)
    stats = queries.log_stats(engine, Window(now - timedelta(hours=1), now + timedelta(hours=1)))
    assert unhandled.rows == [] and groups == []
    assert [row["type_error"] for row in handled.rows] == ["ConnectionError"]
    assert stats.totals.errors == 0
