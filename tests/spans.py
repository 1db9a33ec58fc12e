"""Spans as real apps produce them, made with the real SDK, for tests and benchmarks."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer

from chatspan import semconv as sc

QUESTION = "How do I reset my password if I no longer have access to my email account? " * 2
ANSWER = (
    "You can reset it from Settings > Security. If you lost access to your email, "
    "contact support with your account id and a recovery code. "
) * 4


def chat_attributes(i: int) -> dict:
    return {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.DIFY_APP_ID: f"app-{i % 7}",
        sc.GEN_AI_CONVERSATION_ID: f"conv-{i % 97}",
        sc.DIFY_MESSAGE_ID: f"msg-{i}",
        sc.USER_ID: f"user-{i % 50}",
        sc.INPUT_VALUE: f"{QUESTION} #{i}",
        sc.OUTPUT_VALUE: f"{ANSWER} #{i}",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_USAGE_INPUT_TOKENS: 40 + i % 10,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 120 + i % 30,
        sc.GEN_AI_REQUEST_STREAM: bool(i % 2),
        sc.HTTP_ROUTE: "/v1/chat-messages",
        "dify.workflow_run_id": f"run-{i}",
    }


def make_chat_span(
    tracer: Tracer, i: int, *, with_exception: bool = False, redacted: bool = False
) -> None:
    """One chat span; with an exception event when asked; `redacted` marks it as
    chatspan's instrumentation marks the text it redacted before the span."""
    attributes = chat_attributes(i)
    if redacted:
        attributes[sc.CHATSPAN_REDACTED] = True
    with tracer.start_as_current_span(
        f"chat app-{i % 7}", attributes=attributes, record_exception=False
    ) as span:
        if with_exception:
            try:
                raise ValueError(f"model returned no choices for message {i}")
            except ValueError as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))


class SpanRecorder:
    """A real TracerProvider that keeps every finished span in memory."""

    def __init__(self) -> None:
        self._memory = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self._memory))
        self.tracer = self.provider.get_tracer("test")

    def spans(self) -> list[ReadableSpan]:
        return list(self._memory.get_finished_spans())


def chat_spans(count: int, *, exception_every: int = 0) -> list[ReadableSpan]:
    """`count` finished chat spans; every `exception_every`-th carries an exception."""
    recorder = SpanRecorder()
    for i in range(count):
        make_chat_span(
            recorder.tracer, i, with_exception=bool(exception_every) and i % exception_every == 0
        )
    return recorder.spans()
