"""The span → record mapping, on spans made by the real SDK."""

from __future__ import annotations

import json
import math

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from chatspan import semconv as sc
from chatspan.records import (
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    SpanData,
    SpanEvent,
    fingerprint,
    map_spans,
)


@pytest.fixture
def tracer_and_spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "dify-api"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    yield tracer, lambda: [SpanData.from_sdk(s) for s in memory.get_finished_spans()]
    provider.shutdown()


def test_chat_span_maps_every_column(tracer_and_spans):
    tracer, spans = tracer_and_spans
    with tracer.start_as_current_span(
        "chat support-bot",
        attributes={
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.DIFY_APP_ID: "support-bot",
            sc.GEN_AI_CONVERSATION_ID: "conv-1",
            sc.DIFY_MESSAGE_ID: "msg-1",
            sc.USER_ID: "alice",
            sc.INPUT_VALUE: "hello",
            sc.OUTPUT_VALUE: "hi there",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 11,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 22,
            sc.GEN_AI_REQUEST_STREAM: True,
            sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 0.25,
            sc.HTTP_ROUTE: "/v1/chat-messages",
            "dify.workflow_run_id": "run-9",
        },
    ) as span:
        context = span.get_span_context()
    batch = map_spans(spans())
    assert batch.errors == [] and batch.skipped == 0
    (chat,) = batch.chats
    assert chat.trace_id == f"{context.trace_id:032x}"
    assert chat.span_id == f"{context.span_id:016x}"
    assert (chat.app_id, chat.conversation_id, chat.message_id, chat.user_id) == (
        "support-bot",
        "conv-1",
        "msg-1",
        "alice",
    )
    assert (chat.input_text, chat.output_text) == ("hello", "hi there")
    assert (chat.model, chat.provider) == ("gpt-4o-mini", "openai")
    assert (chat.input_tokens, chat.output_tokens, chat.total_tokens) == (11, 22, 33)
    assert chat.time_to_first_token_ms == 250.0
    assert chat.response_mode == "streaming"
    assert chat.status == "ok"
    assert chat.route == "/v1/chat-messages"
    assert chat.service_name == "dify-api"
    assert chat.attributes == {"dify.workflow_run_id": "run-9"}
    assert chat.latency_ms is not None and chat.latency_ms >= 0


def test_fallback_attributes_and_genai_messages(tracer_and_spans):
    tracer, spans = tracer_and_spans
    input_messages = [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "first"}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "ok"}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "second "},
                {"type": "text", "content": "question"},
            ],
        },
    ]
    output_messages = [{"role": "assistant", "content": "the answer"}]
    with tracer.start_as_current_span(
        "anything",
        attributes={
            sc.CHATSPAN_KIND: "chat",
            sc.ENDUSER_ID: "bob",
            sc.SESSION_ID: "sess-7",
            sc.GEN_AI_INPUT_MESSAGES: json.dumps(input_messages),
            sc.GEN_AI_OUTPUT_MESSAGES: json.dumps(output_messages),
            sc.GEN_AI_SYSTEM: "anthropic",
            sc.GEN_AI_REQUEST_STREAM: False,
            sc.CHATSPAN_LATENCY_MS: 1234.5,
        },
    ):
        pass
    (chat,) = map_spans(spans()).chats
    assert chat.user_id == "bob"
    assert chat.conversation_id == "sess-7"
    assert chat.input_text == "second question"
    assert chat.output_text == "the answer"
    assert chat.provider == "anthropic"
    assert chat.response_mode == "blocking"
    assert chat.latency_ms == 1234.5


@pytest.mark.parametrize("operation", sorted(sc.CHAT_OPERATIONS))
def test_every_chat_operation_is_a_chat(tracer_and_spans, operation):
    tracer, spans = tracer_and_spans
    with tracer.start_as_current_span("op", attributes={sc.GEN_AI_OPERATION_NAME: operation}):
        pass
    assert len(map_spans(spans()).chats) == 1


def test_other_spans_without_exceptions_give_nothing(tracer_and_spans):
    tracer, spans = tracer_and_spans
    with tracer.start_as_current_span("GET /healthz", attributes={sc.HTTP_ROUTE: "/healthz"}):
        pass
    with tracer.start_as_current_span(
        "embeddings", attributes={sc.GEN_AI_OPERATION_NAME: "embeddings"}
    ):
        pass
    batch = map_spans(spans())
    assert (batch.chats, batch.errors, batch.skipped) == ([], [], 0)


def test_status_error_and_cancelled(tracer_and_spans):
    tracer, spans = tracer_and_spans
    with tracer.start_as_current_span("c1", attributes={sc.CHATSPAN_KIND: "chat"}) as span:
        span.set_status(Status(StatusCode.ERROR))
    with tracer.start_as_current_span(
        "c2", attributes={sc.CHATSPAN_KIND: "chat", sc.CHATSPAN_STATUS: "cancelled"}
    ):
        pass
    statuses = {chat.status for chat in map_spans(spans()).chats}
    assert statuses == {"error", "cancelled"}


def test_exception_events_become_error_rows_on_any_span(tracer_and_spans):
    tracer, spans = tracer_and_spans
    with tracer.start_as_current_span(
        "POST /v1/workflows/run",
        attributes={
            sc.USER_ID: "carol",
            sc.DIFY_APP_ID: "flow",
            sc.HTTP_ROUTE: "/v1/workflows/run",
        },
        record_exception=False,
    ) as span:
        span.add_event(
            sc.EXCEPTION_EVENT,
            {
                sc.EXCEPTION_TYPE: "NodeRunFailed",
                sc.EXCEPTION_MESSAGE: "HTTP request node timed out after 30 s",
                sc.CHATSPAN_NODE_ID: "1711528914102",
                sc.CHATSPAN_NODE_TITLE: "Fetch weather",
                sc.CHATSPAN_NODE_TYPE: "http-request",
            },
        )
        span.add_event("log", {"message": "not an exception"})
        try:
            raise KeyError("missing")
        except KeyError as error:
            span.record_exception(error, attributes={sc.USER_ID: "dave"})
    batch = map_spans(spans())
    assert batch.chats == []
    node_error, key_error = batch.errors
    assert node_error.type_error == "NodeRunFailed"
    assert node_error.error_message == "HTTP request node timed out after 30 s"
    assert (node_error.node, node_error.node_type) == ("Fetch weather", "http-request")
    assert node_error.attributes[sc.CHATSPAN_NODE_ID] == "1711528914102"  # kept beside the title
    assert (node_error.user_id, node_error.app_id, node_error.route) == (
        "carol",
        "flow",
        "/v1/workflows/run",
    )
    assert key_error.type_error == "KeyError"
    assert key_error.user_id == "dave"  # the event's own value wins over the span's
    assert "raise KeyError" in key_error.stacktrace
    assert node_error.id != key_error.id


def test_ids_are_deterministic(tracer_and_spans):
    tracer, spans = tracer_and_spans
    with tracer.start_as_current_span("c", attributes={sc.CHATSPAN_KIND: "chat"}) as span:
        span.add_event(sc.EXCEPTION_EVENT, {sc.EXCEPTION_TYPE: "E"})
    first, second = map_spans(spans()), map_spans(spans())
    assert first.chats[0].id == second.chats[0].id
    assert first.errors[0].id == second.errors[0].id
    assert first.chats[0].id != first.errors[0].id
    assert len(first.chats[0].id) == 32


def _stack(line: int, path: str) -> str:
    return (
        "Traceback (most recent call last):\n"
        f'  File "{path}/api/core/app.py", line {line}, in generate\n'
        "    answer = model.invoke(prompt)\n"
        f'  File "{path}/api/core/model.py", line {line + 40}, in invoke\n'
        "    raise TimeoutError(...)\n"
    )


def test_fingerprint_groups_the_same_error_across_deploys_and_messages():
    a = fingerprint("TimeoutError", _stack(10, "/srv/v1"), "timed out after 30 s (req 1234)")
    b = fingerprint("TimeoutError", _stack(12, "/opt/v2"), "timed out after 31 s (req 9876)")
    assert a == b
    assert fingerprint("ValueError", _stack(10, "/srv/v1"), "x") != a
    other_function = _stack(10, "/srv/v1").replace("in invoke", "in stream")
    assert fingerprint("TimeoutError", other_function, "x") != a
    # Without a stack, the message with its numbers and ids blanked out decides.
    assert fingerprint("E", None, "user 12 missing 0xdeadbeef") == fingerprint(
        "E", None, "user 99 missing 0xabc"
    )
    assert fingerprint("E", None, "user missing") != fingerprint("E", None, "quota exceeded")


def test_odd_attribute_values_are_stored_as_well_as_they_can_be(tracer_and_spans):
    tracer, spans = tracer_and_spans
    huge = "x" * (MAX_TEXT_CHARS + 10)
    with tracer.start_as_current_span(
        "c",
        attributes={
            sc.CHATSPAN_KIND: "chat",
            sc.USER_ID: "u" * (MAX_ID_CHARS + 50),
            sc.INPUT_VALUE: huge,
            sc.OUTPUT_VALUE: "nul\x00byte",
            sc.GEN_AI_USAGE_INPUT_TOKENS: "17",
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 2**70,
            sc.CHATSPAN_LATENCY_MS: math.nan,
            sc.DIFY_APP_ID: ["a", "b"],
            "ratio": math.inf,
            "tags": ("x", "y"),
            "flags": [True, False],
        },
    ):
        pass
    (chat,) = map_spans(spans()).chats
    assert len(chat.input_text) == MAX_TEXT_CHARS
    assert len(chat.user_id) == MAX_ID_CHARS
    assert chat.output_text == "nulbyte"
    assert chat.input_tokens == 17
    assert chat.output_tokens is None  # beyond BIGINT: dropped, not wrapped
    assert chat.latency_ms is not None and math.isfinite(chat.latency_ms)  # NaN → span duration
    assert chat.app_id == '["a", "b"]'
    assert chat.attributes == {"ratio": "inf", "tags": ["x", "y"], "flags": [True, False]}


def test_spans_without_ids_are_skipped_and_counted_the_rest_is_kept(tracer_and_spans):
    tracer, spans = tracer_and_spans
    with tracer.start_as_current_span("c", attributes={sc.CHATSPAN_KIND: "chat"}):
        pass
    no_context = SpanData.from_sdk(
        ReadableSpan(name="orphan", context=None, attributes={sc.CHATSPAN_KIND: "chat"})
    )
    no_start = SpanData(1, 2, "n", 0, None, False, {sc.CHATSPAN_KIND: "chat"})
    batch = map_spans([no_context, *spans(), no_start])
    assert batch.skipped == 2
    assert len(batch.chats) == 1


def test_too_many_attributes_are_capped_and_counted():
    attributes = {sc.CHATSPAN_KIND: "chat", **{f"k{i}": i for i in range(10_000)}}
    span = SpanData(1, 2, "c", 10**18, 10**18 + 5, False, attributes, (SpanEvent("x", 1, {}),))
    (chat,) = map_spans([span]).chats
    assert chat.attributes["chatspan.attributes_dropped"] == 10_000 - 256
    assert len(chat.attributes) == 257


def test_text_chatspan_redacted_is_not_redacted_again_and_the_rest_is(tracer_and_spans):
    """The in-process road redacts before the span and marks it, and the mapping does
    not pay again; what no chatspan redaction saw (another instrumentation's event, a
    span from OTLP) is redacted on its way into a row."""
    tracer, spans = tracer_and_spans
    for marked in (True, False):
        attributes = {sc.CHATSPAN_KIND: "chat", sc.INPUT_VALUE: "from a@b.co"}
        with tracer.start_as_current_span(
            "chat", attributes={**attributes, sc.CHATSPAN_REDACTED: marked}
        ) as span:
            # An event another instrumentation recorded on chatspan's own span.
            span.add_event(sc.EXCEPTION_EVENT, {sc.EXCEPTION_MESSAGE: "for a@b.co"})
    (kept, redacted) = map_spans(spans()).chats
    assert kept.input_text == "from a@b.co"  # as the instrumentation left it (its rules)
    assert redacted.input_text == "from [REDACTED_EMAIL]"
    assert sc.CHATSPAN_REDACTED not in kept.attributes
    assert {e.error_message for e in map_spans(spans()).errors} == {"for [REDACTED_EMAIL]"}
