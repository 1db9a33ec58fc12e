"""Spans as real apps produce them, made with the real SDK, for tests and benchmarks."""

from __future__ import annotations

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


def make_chat_span(tracer: Tracer, i: int, *, with_exception: bool = False) -> None:
    """One chat span; with an exception event when asked."""
    with tracer.start_as_current_span(
        f"chat app-{i % 7}", attributes=chat_attributes(i), record_exception=False
    ) as span:
        if with_exception:
            try:
                raise ValueError(f"model returned no choices for message {i}")
            except ValueError as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
