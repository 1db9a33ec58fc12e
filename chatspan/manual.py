"""The manual API: record a chat or an error from code, as the original system did.

Both functions emit through the global tracer provider, so what they record reaches
every configured exporter (rows, Supabase, a trace viewer), exactly like an
instrumented request; and like the instrumentation, they redact text (chat text, error
messages, stack traces, extra attributes) before it is put on the span, by the rules of
``CHATSPAN_REDACT`` and ``CHATSPAN_REDACT_PATTERNS``.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from chatspan import semconv as sc

_logger = logging.getLogger(__name__)
_tracer = trace.get_tracer("chatspan")
_warned_no_provider = False

# Friendly keyword names for the attributes people set most often.
_ALIASES = {
    "model": sc.GEN_AI_REQUEST_MODEL,
    "provider": sc.GEN_AI_PROVIDER_NAME,
    "message_id": sc.DIFY_MESSAGE_ID,
    "input_tokens": sc.GEN_AI_USAGE_INPUT_TOKENS,
    "output_tokens": sc.GEN_AI_USAGE_OUTPUT_TOKENS,
}


def log_chat(
    app_id: str | None,
    conversation_id: str | None,
    user_id: str | None,
    input_text: str | None,
    output_text: str | None,
    latency_ms: float | None = None,
    **attributes: Any,
) -> None:
    """Record one chat turn. ``latency_ms``, when given, is what the row stores.

    Extra keyword arguments become span attributes; ``model``, ``provider``,
    ``message_id``, ``input_tokens`` and ``output_tokens`` are shorthands for their
    GenAI names, and any other name (``**{"gen_ai.response.model": ...}``) is kept as is.
    """
    _warn_if_no_provider()
    redaction = _redaction()
    redact = redaction.configured_redactor()
    values = {
        sc.CHATSPAN_KIND: sc.CHATSPAN_KIND_CHAT,
        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_CHAT,
        sc.OPENINFERENCE_SPAN_KIND: "LLM",
        sc.DIFY_APP_ID: app_id,
        sc.GEN_AI_CONVERSATION_ID: conversation_id,
        sc.USER_ID: user_id,
        sc.INPUT_VALUE: redact(input_text) if input_text else input_text,
        sc.OUTPUT_VALUE: redact(output_text) if output_text else output_text,
        sc.CHATSPAN_LATENCY_MS: latency_ms,
        **_expand(attributes, redaction),
        sc.CHATSPAN_REDACTED: True,
    }
    with _tracer.start_as_current_span(f"chat {app_id or 'app'}", attributes=sc.present(values)):
        pass


def log_error(
    type_error: str,
    error_message: str,
    user_id: str | None = None,
    node: str | None = None,
    exc: BaseException | None = None,
    **attributes: Any,
) -> None:
    """Record one error as an ``exception`` event; ``exc`` adds its stack trace."""
    _warn_if_no_provider()
    redaction = _redaction()
    redact = redaction.configured_redactor()
    span_attributes = sc.present(
        {
            sc.USER_ID: user_id,
            sc.CHATSPAN_NODE_ID: node,
            **_expand(attributes, redaction),
            sc.CHATSPAN_REDACTED: True,
        }
    )
    message = redact(error_message)
    event = {sc.EXCEPTION_TYPE: type_error, sc.EXCEPTION_MESSAGE: message}
    with _tracer.start_as_current_span(
        f"error {type_error}",
        attributes=span_attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if exc is not None:
            span.record_exception(
                exc, attributes={**redaction.exception_attributes(redact, exc), **event}
            )
        else:
            span.add_event(sc.EXCEPTION_EVENT, {**event, sc.CHATSPAN_REDACTED: True})
        span.set_attribute(sc.ERROR_TYPE, type_error)
        span.set_status(Status(StatusCode.ERROR, message))


def _expand(attributes: dict[str, Any], redaction: ModuleType) -> dict[str, Any]:
    """Keyword attributes under their attribute names. The shorthands are identifiers
    and counts; the others may hold any text, so they are redacted."""
    shorthands = {_ALIASES[name]: v for name, v in attributes.items() if name in _ALIASES}
    others = {name: v for name, v in attributes.items() if name not in _ALIASES}
    return {**shorthands, **redaction.redact_values(redaction.configured_redactor(), others)}


def _redaction() -> ModuleType:
    """The instrumentation's redaction, imported on first use: importing the
    instrumentation package costs every ``import chatspan`` (the exporters, the query
    service) tens of milliseconds otherwise."""
    from chatspan.instrumentation import redaction  # noqa: PLC0415

    return redaction


def _warn_if_no_provider() -> None:
    global _warned_no_provider  # noqa: PLW0603  (one warning per process)
    if not _warned_no_provider and isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    ):
        _warned_no_provider = True
        _logger.warning(
            "chatspan: no OpenTelemetry tracer provider is configured, so log_chat/log_error "
            "record nothing; run under opentelemetry-instrument with "
            "OTEL_TRACES_EXPORTER=chatspan_postgres, or set a TracerProvider yourself"
        )
