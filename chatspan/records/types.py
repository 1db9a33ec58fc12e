"""The records chatspan stores, and the column order of their tables.

:class:`SpanData` is what every road (the SDK exporter, the Supabase exporter, OTLP
ingest) turns its span into; :class:`ChatRecord` and :class:`ErrorRecord` are one row
of ``dify_logs`` and of ``error``. The records' fields are the one declaration of the
tables' columns and of their order: the writer, the COPY format and the API's row
models are derived from them.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from opentelemetry.trace import StatusCode

from chatspan import semconv as sc


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
            trace_id=context.trace_id if context else 0,
            span_id=context.span_id if context else 0,
            name=span.name,
            start_ns=span.start_time or 0,
            end_ns=span.end_time,
            is_error=span.status.status_code is StatusCode.ERROR,
            # A plain dict: the SDK's read-only attribute view is slow to look things up in.
            attributes=attributes.copy() if attributes is not None else {},
            events=tuple(
                SpanEvent(
                    name=e.name, timestamp_ns=e.timestamp, attributes=dict(e.attributes or {})
                )
                for e in events
            )
            if events
            else (),
            service_name=resource.attributes.get(sc.SERVICE_NAME) if resource else None,
        )


# Records are made with keywords only: the fields' order is the columns' order, and a
# field moved or added can then never shift a value into another column.
@dataclass(slots=True, kw_only=True)
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


@dataclass(slots=True, kw_only=True)
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
