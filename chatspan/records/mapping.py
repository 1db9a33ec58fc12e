"""The one mapping from a span to the rows chatspan stores.

Spans arrive by three roads (the SDK exporter, the Supabase exporter, OTLP ingest); each
road first turns its span into a :class:`SpanData`, and :func:`map_spans` turns those into
:class:`ChatRecord` / :class:`ErrorRecord` values. A chat therefore looks the same in the
tables whichever road it took.

Which spans are chat rows, and how an error inside a chat's trace takes the chat's
context, are decided here too; the values themselves are cleaned, capped and redacted by
:mod:`chatspan.records.text`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from chatspan import semconv as sc
from chatspan.records.fingerprint import fingerprint, row_id
from chatspan.records.text import (
    bigint_or_none,
    extra_attributes,
    finite_float_or_none,
    redaction_for,
    stored_identifier,
    stored_text,
    utc_datetime,
)
from chatspan.records.types import (
    ChatRecord,
    ErrorRecord,
    MappedBatch,
    SpanData,
    SpanEvent,
)

if TYPE_CHECKING:
    from chatspan.instrumentation.redaction import Redactor

_logger = logging.getLogger(__name__)


def map_spans(spans: Iterable[SpanData]) -> MappedBatch:
    """Map every span; a span that cannot be mapped is counted and skipped, never fatal."""
    batch = MappedBatch()
    for _chat in map_spans_lazily(spans, batch):
        pass
    return batch


def map_spans_lazily(spans: Iterable[SpanData], batch: MappedBatch) -> Iterator[ChatRecord]:
    """Map spans one at a time into `batch`, yielding each chat record as it is made.

    Lets the writer stream chats into the database while later spans are still being
    mapped; when the iterator is exhausted, `batch` holds every record.
    """
    for span in spans:
        try:
            if not (span.trace_id and span.span_id and span.start_ns):
                raise ValueError("the span has no trace id, span id or start time")
            chat, errors = _map_span(span)
        except Exception as exc:
            _logger.warning("chatspan: skipped a span that could not be mapped: %s", exc)
            batch.skipped += 1
            continue
        batch.errors.extend(errors)
        if chat is not None:
            batch.chats.append(chat)
            yield chat


def _map_span(span: SpanData) -> tuple[ChatRecord | None, list[ErrorRecord]]:
    """A chat span gives a chat record; every ``exception`` event gives an error record."""
    trace_hex = f"{span.trace_id:032x}"
    span_hex = f"{span.span_id:016x}"
    chat = (
        _chat_record(span, trace_hex, span_hex, redaction_for(span.attributes))
        if is_chat_row(span)
        else None
    )
    errors = (
        [
            _error_record(span, event, index, message, redact, trace_hex, span_hex)
            for index, event, message, redact in _exception_events(span)
        ]
        if span.events
        else []
    )
    return chat, errors


def _exception_events(
    span: SpanData,
) -> Iterator[tuple[int, SpanEvent, str | None, Redactor | None]]:
    """The span's exception events that are errors of their own, each with its message
    as stored and the redaction its other text still needs.

    Skipped: an exception recorded twice on the same span (server instrumentations and
    framework hooks can both see it, at different depths of its traceback, so type and
    message as stored decide: one copy may be redacted already, the other not), and one
    the chat span below already holds (the server span is then marked with the
    exception's type).
    """
    on_chat_span = _short_type(span.attributes.get(sc.CHATSPAN_EXCEPTION_ON_CHAT_SPAN))
    seen: set[tuple[Any, Any]] = set()
    for index, event in enumerate(span.events):
        if event.name != sc.EXCEPTION_EVENT:
            continue
        attributes = event.attributes
        kind = attributes.get(sc.EXCEPTION_TYPE)
        if on_chat_span is not None and _short_type(kind) == on_chat_span:
            continue
        redact = redaction_for(attributes)
        message = stored_text(attributes.get(sc.EXCEPTION_MESSAGE), redact)
        key = (kind, message)
        if key in seen:
            continue
        seen.add(key)
        yield index, event, message, redact


def _short_type(name: Any) -> str | None:
    """An exception type without its module: SDK versions differ in which they record."""
    return str(name).rsplit(".", 1)[-1] if name is not None else None


def is_chat_span(span: SpanData) -> bool:
    attributes = span.attributes
    return (
        attributes.get(sc.CHATSPAN_KIND) == sc.CHATSPAN_KIND_CHAT
        or attributes.get(sc.GEN_AI_OPERATION_NAME) in sc.CHAT_OPERATIONS
    )


# A request the app refused (a wrong key, a forbidden app) is no chat.
REFUSED_STATUSES = frozenset({401, 403})


def is_chat_row(span: SpanData) -> bool:
    """A chat span, unless the app refused the request, or it is a model call made
    inside another chat (a GenAI instrumentation's span below chatspan's chat span)."""
    attributes = span.attributes
    return (
        is_chat_span(span)
        and attributes.get(sc.HTTP_RESPONSE_STATUS_CODE) not in REFUSED_STATUSES
        and not attributes.get(sc.CHATSPAN_INSIDE_CHAT)
    )


# Columns filled from attributes: these are not repeated in the `attributes` JSON.
_CHAT_CONSUMED = frozenset(
    {
        sc.CHATSPAN_KIND,
        sc.GEN_AI_OPERATION_NAME,
        sc.DIFY_APP_ID,
        sc.DIFY_APP_NAME,
        sc.GEN_AI_CONVERSATION_ID,
        sc.SESSION_ID,
        sc.DIFY_MESSAGE_ID,
        sc.GEN_AI_RESPONSE_ID,
        sc.USER_ID,
        sc.ENDUSER_ID,
        sc.INPUT_VALUE,
        sc.OUTPUT_VALUE,
        sc.GEN_AI_INPUT_MESSAGES,
        sc.GEN_AI_OUTPUT_MESSAGES,
        sc.CHATSPAN_LATENCY_MS,
        sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
        sc.GEN_AI_REQUEST_MODEL,
        sc.GEN_AI_RESPONSE_MODEL,
        sc.LLM_MODEL_NAME,
        sc.GEN_AI_PROVIDER_NAME,
        sc.GEN_AI_SYSTEM,
        sc.GEN_AI_USAGE_INPUT_TOKENS,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
        sc.CHATSPAN_TOTAL_TOKENS,
        sc.LLM_TOKEN_COUNT_TOTAL,
        sc.CHATSPAN_STATUS,
        sc.GEN_AI_REQUEST_STREAM,
        sc.HTTP_ROUTE,
        sc.CHATSPAN_ROUTE,
        sc.OPENINFERENCE_SPAN_KIND,
        sc.CHATSPAN_REDACTED,
    }
)
_ERROR_CONSUMED = frozenset(
    {
        sc.EXCEPTION_TYPE,
        sc.EXCEPTION_MESSAGE,
        sc.EXCEPTION_STACKTRACE,
        sc.USER_ID,
        sc.ENDUSER_ID,
        sc.DIFY_APP_ID,
        sc.GEN_AI_CONVERSATION_ID,
        sc.SESSION_ID,
        sc.CHATSPAN_NODE_TITLE,
        sc.CHATSPAN_NODE_TYPE,
        sc.CHATSPAN_REDACTED,
    }
)


def _chat_record(
    span: SpanData, trace_hex: str, span_hex: str, redact: Redactor | None
) -> ChatRecord:
    # Runs once per exported chat: plain lookups, where the first present value wins.
    get = span.attributes.get
    input_tokens = bigint_or_none(get(sc.GEN_AI_USAGE_INPUT_TOKENS))
    output_tokens = bigint_or_none(get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
    total_tokens = bigint_or_none(get(sc.CHATSPAN_TOTAL_TOKENS) or get(sc.LLM_TOKEN_COUNT_TOTAL))
    if total_tokens is None and (input_tokens is not None or output_tokens is not None):
        total_tokens = (input_tokens or 0) + (output_tokens or 0)
    latency_ms = finite_float_or_none(get(sc.CHATSPAN_LATENCY_MS))
    if latency_ms is None and span.end_ns:
        latency_ms = (span.end_ns - span.start_ns) / 1e6
    first_chunk_s = finite_float_or_none(get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK))
    stream = get(sc.GEN_AI_REQUEST_STREAM)
    return ChatRecord(
        id=row_id(trace_hex, span_hex),
        created_at=utc_datetime(span.start_ns),
        trace_id=trace_hex,
        span_id=span_hex,
        app_id=stored_identifier(get(sc.DIFY_APP_ID)),
        app_name=stored_identifier(get(sc.DIFY_APP_NAME)),
        conversation_id=stored_identifier(get(sc.GEN_AI_CONVERSATION_ID) or get(sc.SESSION_ID)),
        message_id=stored_identifier(get(sc.DIFY_MESSAGE_ID) or get(sc.GEN_AI_RESPONSE_ID)),
        user_id=stored_identifier(get(sc.USER_ID) or get(sc.ENDUSER_ID)),
        input_text=stored_text(get(sc.INPUT_VALUE), redact)
        or _last_user_message(get(sc.GEN_AI_INPUT_MESSAGES), redact),
        output_text=stored_text(get(sc.OUTPUT_VALUE), redact)
        or _assistant_text(get(sc.GEN_AI_OUTPUT_MESSAGES), redact),
        latency_ms=latency_ms,
        time_to_first_token_ms=first_chunk_s * 1000 if first_chunk_s is not None else None,
        model=stored_identifier(
            get(sc.GEN_AI_RESPONSE_MODEL) or get(sc.GEN_AI_REQUEST_MODEL) or get(sc.LLM_MODEL_NAME)
        ),
        provider=stored_identifier(get(sc.GEN_AI_PROVIDER_NAME) or get(sc.GEN_AI_SYSTEM)),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        status=_chat_status(span),
        response_mode=None if stream is None else ("streaming" if stream else "blocking"),
        route=stored_identifier(get(sc.CHATSPAN_ROUTE) or get(sc.HTTP_ROUTE)),
        service_name=stored_identifier(span.service_name),
        attributes=extra_attributes(
            span.attributes, _CHAT_CONSUMED, span.dropped_attributes, redact
        ),
    )


def _chat_status(span: SpanData) -> str:
    if span.attributes.get(sc.CHATSPAN_STATUS) == sc.STATUS_CANCELLED:
        return sc.STATUS_CANCELLED
    return sc.STATUS_ERROR if span.is_error else sc.STATUS_OK


def _error_record(
    span: SpanData,
    event: SpanEvent,
    index: int,
    message: str | None,
    redact: Redactor | None,
    trace_hex: str,
    span_hex: str,
) -> ErrorRecord:
    e, a = event.attributes, span.attributes

    def either(*keys: str) -> str | None:
        """The event's own value, else the span's."""
        for attributes in (e, a):
            for key in keys:
                if value := attributes.get(key):
                    return stored_identifier(value)
        return None

    type_error = stored_identifier(e.get(sc.EXCEPTION_TYPE)) or "Error"
    stacktrace = stored_text(e.get(sc.EXCEPTION_STACKTRACE), redact)
    extra = extra_attributes(e, _ERROR_CONSUMED, event.dropped_attributes, redact)
    extra.setdefault("span.name", redact.value(span.name) if redact else span.name)
    return ErrorRecord(
        id=row_id(trace_hex, span_hex, index),
        created_at=utc_datetime(event.timestamp_ns or span.start_ns),
        trace_id=trace_hex,
        span_id=span_hex,
        type_error=type_error,
        error_message=message,
        stacktrace=stacktrace,
        fingerprint=fingerprint(type_error, stacktrace, message),
        user_id=either(sc.USER_ID, sc.ENDUSER_ID),
        app_id=either(sc.DIFY_APP_ID),
        conversation_id=either(sc.GEN_AI_CONVERSATION_ID, sc.SESSION_ID),
        node=either(sc.CHATSPAN_NODE_TITLE, sc.CHATSPAN_NODE_ID),
        node_type=either(sc.CHATSPAN_NODE_TYPE),
        route=stored_identifier(a.get(sc.CHATSPAN_ROUTE) or a.get(sc.HTTP_ROUTE)),
        service_name=stored_identifier(span.service_name),
        handled=not span.is_error,
        attributes=extra,
    )


def _messages(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    return [m for m in value if isinstance(m, Mapping)]


def _message_text(message: Mapping[str, Any]) -> str:
    """Text of a GenAI message: the `parts` form of the current conventions, or `content`."""
    parts = message.get("parts")
    if isinstance(parts, list):
        return "".join(
            str(p.get("content", ""))
            for p in parts
            if isinstance(p, Mapping) and p.get("type") == "text"
        )
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _last_user_message(value: Any, redact: Redactor | None) -> str | None:
    for message in reversed(_messages(value)):
        if message.get("role") == "user":
            return stored_text(_message_text(message), redact)
    return None


def _assistant_text(value: Any, redact: Redactor | None) -> str | None:
    texts = [
        _message_text(m) for m in _messages(value) if m.get("role", "assistant") == "assistant"
    ]
    return stored_text("".join(texts), redact)


# -- an error inside a chat's trace --------------------------------------------------


class ChatContext(Protocol):
    """What an error inside a chat's trace takes from the chat (a ChatRecord, or a row)."""

    trace_id: str
    span_id: str
    user_id: str | None
    app_id: str | None
    conversation_id: str | None
    route: str | None
    status: str


def take_chat_context(error: ErrorRecord, chat: ChatContext) -> None:
    """An error inside a chat's trace belongs to the chat: it takes the chat's user, app,
    conversation and route where its own span said nothing. An error on another span of
    a chat that ended ok is one the app recovered from: handled."""
    error.user_id = error.user_id or chat.user_id
    error.app_id = error.app_id or chat.app_id
    error.conversation_id = error.conversation_id or chat.conversation_id
    error.route = error.route or chat.route
    if error.span_id != chat.span_id and chat.status == sc.STATUS_OK:
        error.handled = True


def join_errors_to_chats(batch: MappedBatch) -> list[ErrorRecord]:
    """Give each error of the batch its chat's context; the errors whose trace has no
    chat in the batch are returned (their chat may be stored already, or come later)."""
    if not batch.errors:
        return []
    chats = {chat.trace_id: chat for chat in batch.chats}
    without_chat = []
    for error in batch.errors:
        chat = chats.get(error.trace_id)
        if chat is not None:
            take_chat_context(error, chat)
        else:
            without_chat.append(error)
    return without_chat
