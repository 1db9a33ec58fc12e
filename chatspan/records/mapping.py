"""The one mapping from a span to the rows chatspan stores.

Spans arrive by three roads (the SDK exporter, the Supabase exporter, OTLP ingest); each
road first turns its span into a :class:`SpanData`, and :func:`map_spans` turns those into
:class:`ChatRecord` / :class:`ErrorRecord` values. A chat therefore looks the same in the
tables whichever road it took.

Text is redacted here too (``CHATSPAN_REDACT``, ``CHATSPAN_REDACT_PATTERNS``): chat
text, error messages, stack traces and the attributes copied into the row. Text
chatspan's instrumentation or manual API redacted before it made the span is marked
``chatspan.redacted`` and not redacted again, so the in-process road pays once; what
other instrumentations recorded (an exception a server instrumentation records in
clear) and what arrives over OTLP is redacted on its way into a row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.trace import StatusCode

from chatspan import semconv as sc

if TYPE_CHECKING:
    from chatspan.instrumentation.redaction import Redactor

_logger = logging.getLogger(__name__)

# Caps that keep one odd span from bloating a row.
MAX_TEXT_CHARS = 1_000_000
MAX_EXTRA_ATTRIBUTES = 256
MAX_ATTRIBUTE_CHARS = 8_192
MAX_ID_CHARS = 512  # ids, names and routes are indexed: btree entries must stay small
_BIGINT_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(slots=True)
class SpanEvent:
    """One span event, whatever format it was decoded from."""

    name: str
    timestamp_ns: int
    attributes: Mapping[str, Any]
    dropped_attributes: int = 0  # left out before the mapping saw the event (OTLP ingest)


@dataclass(slots=True)
class SpanData:
    """The parts of a span the mapping reads: built from an SDK span or an OTLP span."""

    trace_id: int
    span_id: int
    name: str
    start_ns: int
    end_ns: int | None
    is_error: bool
    attributes: Mapping[str, Any]
    events: Sequence[SpanEvent] = ()
    service_name: str | None = None
    dropped_attributes: int = 0  # left out before the mapping saw the span (OTLP ingest)

    @classmethod
    def from_sdk(cls, span: Any) -> SpanData:
        """Read an ``opentelemetry.sdk.trace.ReadableSpan``."""
        context = span.context
        attributes = span.attributes
        events = span.events
        resource = span.resource
        return cls(
            context.trace_id if context else 0,
            context.span_id if context else 0,
            span.name,
            span.start_time or 0,
            span.end_time,
            span.status.status_code is StatusCode.ERROR,
            # A plain dict: the SDK's read-only attribute view is slow to look things up in.
            attributes.copy() if attributes is not None else {},
            tuple(SpanEvent(e.name, e.timestamp, dict(e.attributes or {})) for e in events)
            if events
            else (),
            resource.attributes.get(sc.SERVICE_NAME) if resource else None,
        )


@dataclass(slots=True)
class ChatRecord:
    """One row of ``dify_logs``: a chat turn."""

    id: str
    created_at: datetime
    trace_id: str
    span_id: str
    app_id: str | None = None
    app_name: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None
    user_id: str | None = None
    input_text: str | None = None
    output_text: str | None = None
    latency_ms: float | None = None
    time_to_first_token_ms: float | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    status: str = sc.STATUS_OK
    response_mode: str | None = None
    route: str | None = None
    service_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return dict(zip(CHAT_COLUMNS, _chat_values(self), strict=True))

    def values(self) -> tuple[Any, ...]:
        """The column values in table order."""
        return _chat_values(self)


@dataclass(slots=True)
class ErrorRecord:
    """One row of ``error``: an exception event."""

    id: str
    created_at: datetime
    trace_id: str
    span_id: str
    type_error: str
    error_message: str | None = None
    stacktrace: str | None = None
    fingerprint: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    conversation_id: str | None = None
    node: str | None = None
    node_type: str | None = None
    route: str | None = None
    service_name: str | None = None
    # The app recovered: its span did not end in error, or the chat around it ended ok.
    # Left out of error counts, groups and alerts unless asked for.
    handled: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return dict(zip(ERROR_COLUMNS, _error_values(self), strict=True))

    def values(self) -> tuple[Any, ...]:
        """The column values in table order."""
        return _error_values(self)


CHAT_COLUMNS = tuple(f.name for f in fields(ChatRecord))
ERROR_COLUMNS = tuple(f.name for f in fields(ErrorRecord))
_chat_values = operator.attrgetter(*CHAT_COLUMNS)
_error_values = operator.attrgetter(*ERROR_COLUMNS)


@dataclass
class MappedBatch:
    """What a batch of spans became: rows to write, and how many spans were unusable."""

    chats: list[ChatRecord] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.chats) + len(self.errors)


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
        _chat_record(span, trace_hex, span_hex, _redaction_for(span.attributes))
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


def _redaction_for(attributes: Mapping[str, Any]) -> Redactor | None:
    """None when chatspan redacted this span's (or event's) text already, else the
    configured redaction."""
    if attributes.get(sc.CHATSPAN_REDACTED):
        return None
    # Imported here: the instrumentation package imports this module.
    from chatspan.instrumentation.redaction import configured_redactor  # noqa: PLC0415

    return configured_redactor()


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
        redact = _redaction_for(attributes)
        message = _text(attributes.get(sc.EXCEPTION_MESSAGE), redact)
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


def row_id(trace_hex: str, span_hex: str, event_index: int | None = None) -> str:
    """A 128-bit id (32 hex digits) derived from the span, so a re-export stores nothing new."""
    name = (
        f"{trace_hex}{span_hex}" if event_index is None else f"{trace_hex}{span_hex}:{event_index}"
    )
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:32]


def fingerprint(type_error: str, stacktrace: str | None, message: str | None) -> str:
    """Groups the same error: its type and code location, not the changing parts of its text."""
    frames = _frames(stacktrace) if stacktrace else []
    basis = frames if frames else [_normalise_message(message or "")]
    digest = hashlib.sha256("\n".join([type_error, *basis]).encode("utf-8", "replace"))
    return digest.hexdigest()[:32]


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
    input_tokens = _int(get(sc.GEN_AI_USAGE_INPUT_TOKENS))
    output_tokens = _int(get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
    total_tokens = _int(get(sc.CHATSPAN_TOTAL_TOKENS) or get(sc.LLM_TOKEN_COUNT_TOTAL))
    if total_tokens is None and (input_tokens is not None or output_tokens is not None):
        total_tokens = (input_tokens or 0) + (output_tokens or 0)
    latency_ms = _float(get(sc.CHATSPAN_LATENCY_MS))
    if latency_ms is None and span.end_ns:
        latency_ms = (span.end_ns - span.start_ns) / 1e6
    first_chunk_s = _float(get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK))
    stream = get(sc.GEN_AI_REQUEST_STREAM)
    # Positional, in column order: this runs once per chat and keywords cost a third of it.
    return ChatRecord(
        row_id(trace_hex, span_hex),
        _datetime(span.start_ns),  # created_at
        trace_hex,
        span_hex,
        _str(get(sc.DIFY_APP_ID)),  # app_id
        _str(get(sc.DIFY_APP_NAME)),  # app_name
        _str(get(sc.GEN_AI_CONVERSATION_ID) or get(sc.SESSION_ID)),  # conversation_id
        _str(get(sc.DIFY_MESSAGE_ID) or get(sc.GEN_AI_RESPONSE_ID)),  # message_id
        _str(get(sc.USER_ID) or get(sc.ENDUSER_ID)),  # user_id
        _text(get(sc.INPUT_VALUE), redact)
        or _last_user_message(get(sc.GEN_AI_INPUT_MESSAGES), redact),
        _text(get(sc.OUTPUT_VALUE), redact)
        or _assistant_text(get(sc.GEN_AI_OUTPUT_MESSAGES), redact),
        latency_ms,
        first_chunk_s * 1000 if first_chunk_s is not None else None,  # time_to_first_token_ms
        _str(
            get(sc.GEN_AI_RESPONSE_MODEL) or get(sc.GEN_AI_REQUEST_MODEL) or get(sc.LLM_MODEL_NAME)
        ),
        _str(get(sc.GEN_AI_PROVIDER_NAME) or get(sc.GEN_AI_SYSTEM)),  # provider
        input_tokens,
        output_tokens,
        total_tokens,
        _chat_status(span),
        None if stream is None else ("streaming" if stream else "blocking"),  # response_mode
        _str(get(sc.CHATSPAN_ROUTE) or get(sc.HTTP_ROUTE)),  # route
        _str(span.service_name),
        _extra_attributes(span.attributes, _CHAT_CONSUMED, span.dropped_attributes, redact),
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
                    return _str(value)
        return None

    type_error = _str(e.get(sc.EXCEPTION_TYPE)) or "Error"
    stacktrace = _text(e.get(sc.EXCEPTION_STACKTRACE), redact)
    extra = _extra_attributes(e, _ERROR_CONSUMED, event.dropped_attributes, redact)
    extra.setdefault("span.name", redact.value(span.name) if redact else span.name)
    return ErrorRecord(
        id=row_id(trace_hex, span_hex, index),
        created_at=_datetime(event.timestamp_ns or span.start_ns),
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
        route=_str(a.get(sc.CHATSPAN_ROUTE) or a.get(sc.HTTP_ROUTE)),
        service_name=_str(span.service_name),
        handled=not span.is_error,
        attributes=extra,
    )


def _datetime(ns: int) -> datetime:
    return _EPOCH + timedelta(0, 0, ns // 1000)  # positional: a third faster than microseconds=


def _clean(text: str, limit: int) -> str:
    """Text every database accepts: no NUL (PostgreSQL refuses it), valid UTF-8, capped."""
    if len(text) > limit:
        text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates, as decoding garbage can leave
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _str(value: Any) -> str | None:
    """A short identifier-like value (ids, names), or None."""
    if type(value) is not str:
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray)):
            value = value.hex()
        elif isinstance(value, (list, tuple)):
            value = json.dumps(_jsonable(value))
        else:
            value = str(value)
    return _clean(value, MAX_ID_CHARS) or None


def _text(value: Any, redact: Redactor | None = None) -> str | None:
    """Chat content or an error text: kept whole up to MAX_TEXT_CHARS, and redacted
    when `redact` is given."""
    if type(value) is not str:
        if value is None:
            return None
        value = "\n".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    text = _clean(value, MAX_TEXT_CHARS)
    return (redact(text) if redact else text) or None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -_BIGINT_MAX <= number <= _BIGINT_MAX else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
            return _text(_message_text(message), redact)
    return None


def _assistant_text(value: Any, redact: Redactor | None) -> str | None:
    texts = [
        _message_text(m) for m in _messages(value) if m.get("role", "assistant") == "assistant"
    ]
    return _text("".join(texts), redact)


def _jsonable(value: Any) -> Any:
    """An attribute value as JSON both PostgreSQL and SQLite accept."""
    if type(value) is str:
        return _clean(value, MAX_ATTRIBUTE_CHARS)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -_BIGINT_MAX <= value <= _BIGINT_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value[:MAX_EXTRA_ATTRIBUTES]]
    if isinstance(value, Mapping):
        return {
            _clean(str(k), 256): _jsonable(v) for k, v in list(value.items())[:MAX_EXTRA_ATTRIBUTES]
        }
    return _clean(str(value), MAX_ATTRIBUTE_CHARS)


def _extra_attributes(
    attributes: Mapping[str, Any],
    consumed: frozenset[str],
    dropped: int,
    redact: Redactor | None,
) -> dict[str, Any]:
    """The attributes no column holds, capped and redacted when `redact` is given;
    `dropped` were left out before this."""
    # One pass over the keys, as this runs for every record: the values of consumed keys
    # are never touched (reading them costs as much as the rest of this function).
    extra: dict[str, Any] = {}
    kept = 0
    for key in attributes:
        if key in consumed:
            continue
        if kept < MAX_EXTRA_ATTRIBUTES:
            value = _jsonable(attributes[key])
            extra[_clean(str(key), 256)] = value if redact is None else _redacted(value, redact)
            kept += 1
        else:
            dropped += 1
    if dropped:
        extra[sc.CHATSPAN_ATTRIBUTES_DROPPED] = dropped
    return extra


def _redacted(value: Any, redact: Redactor) -> Any:
    """A JSON value with its strings redacted (as attribute values: see Redactor.value)."""
    if type(value) is str:
        return redact.value(value)
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item, redact) for key, item in value.items()}
    return value


_PYTHON_FRAME = re.compile(r'File "(?P<path>[^"]+)", line \d+, in (?P<function>\S+)')
_OTHER_FRAME = re.compile(r"^\s*at\s+(?P<frame>.+)$", re.MULTILINE)
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]+|\d+", re.IGNORECASE
)


def _frames(stacktrace: str) -> list[str]:
    """Code locations without line numbers or install paths, which change between deploys."""
    python = [
        f"{m['path'].replace(chr(92), '/').rsplit('/', 1)[-1]}:{m['function']}"
        for m in _PYTHON_FRAME.finditer(stacktrace)
    ]
    if python:
        return python
    return [_VOLATILE.sub("#", m["frame"]).strip() for m in _OTHER_FRAME.finditer(stacktrace)]


def _normalise_message(message: str) -> str:
    return _VOLATILE.sub("#", message)[:500]
