"""One chat request, from its body to the last byte of its answer, as one span.

:class:`ChatCall` is protocol-neutral: the WSGI and ASGI adapters hand it the request
body, the response status and headers, and each body chunk as it goes to the client;
it keeps only what it needs (capped text, a bounded SSE buffer), and turns it into the
chat span's attributes (see chat_attributes) and ``exception`` events when the
response ends. What the traffic means is its route's shape's to say.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from time import time_ns
from typing import NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from chatspan import semconv as sc
from chatspan.instrumentation import model_calls
from chatspan.instrumentation.chat_attributes import (
    input_attributes,
    learned_attributes,
    request_attributes,
    response_attributes,
    span_name,
)
from chatspan.instrumentation.chat_context import CHAT_CALL_KEY
from chatspan.instrumentation.facts import AnswerText, ExceptionFacts, RequestFacts, ResponseFacts
from chatspan.instrumentation.redaction import exception_attributes, redact_values
from chatspan.instrumentation.routing import RouteMatch
from chatspan.instrumentation.shapes.base import decode_pieces
from chatspan.instrumentation.sse import EventBuffer, event_data
from chatspan.instrumentation.telemetry import ChatTelemetry
from chatspan.records import REFUSED_STATUSES

_logger = logging.getLogger(__name__)

# Events bigger than this are not chat text (base64 audio, file payloads): never parsed.
_MAX_PARSED_EVENT_BYTES = 64 * 1024

_refused = metrics.get_meter("chatspan").create_counter(
    "chatspan.chat.refused",
    unit="{request}",
    description="Requests to chat routes that the app refused with 401 or 403",
)


class _Started(NamedTuple):
    span: trace.Span  # the chat span
    parent: trace.Span  # the span current when it started: the server span, if any


class ChatCall:
    """The chat span of one request, and what the request and response said."""

    def __init__(
        self, telemetry: ChatTelemetry, match: RouteMatch, authorization: str | None
    ) -> None:
        self._telemetry = telemetry
        self._route = match.route
        self.start_ns = time_ns()
        self.request = RequestFacts(operation=match.route.operation)
        match.route.shape.read_credentials(authorization, match.params, self.request)
        self.response = ResponseFacts(answer=AnswerText(telemetry.capture.max_content_chars))
        self._raised: list[tuple[BaseException, int]] = []  # recorded when the chat ends
        self._request_captured = True
        self._status_code: int | None = None
        self._sse: EventBuffer | None = None
        self._json: bytearray | None = None
        self._first_piece_ns: int | None = None
        self._learned: set[str] = set()  # what Dify's objects or the model calls said
        self._model_source = len(model_calls.SOURCES)  # the best source that named a model
        self._finished = False

    # -- request -------------------------------------------------------------------

    def read_request_body(self, body: bytes | None) -> None:
        """Learn the chat from the request JSON; None means the body was not captured."""
        if body is None:
            self._request_captured = False
            return
        try:
            data = json.loads(body.decode("utf-8", "replace"))
        except ValueError:
            return  # the app will answer 400; the span still records the attempt
        if isinstance(data, dict):
            try:
                self._route.shape.read_request(data, self.request)
            except Exception:  # a custom extractor must never break the request
                _logger.warning(
                    "chatspan: could not read a %s request", self._route.path, exc_info=True
                )

    @functools.cached_property
    def _started(self) -> _Started:
        """The one place the chat span starts, on first use: as a child of the span
        current then. That is the server span once the app dispatches the request (the
        framework hooks ask for the chat's context there); an exception, the response
        or its end, when one comes first, starts it where they happen."""
        parent_context = otel_context.get_current()
        span = self._telemetry.tracer.start_span(
            span_name(self._route, self.request),
            context=parent_context,
            kind=SpanKind.INTERNAL,
            start_time=self.start_ns,
            attributes=request_attributes(
                self._route, self.request, body_captured=self._request_captured
            ),
        )
        model_calls.chat_started(span.get_span_context().trace_id, self)
        return _Started(span, trace.get_current_span(parent_context))

    @property
    def span(self) -> trace.Span:
        """The chat span (started now if it was not)."""
        return self._started.span

    @functools.cached_property
    def context(self) -> otel_context.Context:
        """A context in which the chat span is current, for work done on its behalf."""
        return otel_context.set_value(CHAT_CALL_KEY, self, trace.set_span_in_context(self.span))

    # -- what the app's own work says about the chat ------------------------------------

    def learn_app(self, app_id: str | None, name: str | None) -> None:
        """The app as the app's own records name it (Dify's app UUID and name)."""
        if self._finished or "app" in self._learned:
            return
        self._learned.add("app")
        self.request.app_id = app_id or self.request.app_id
        self.request.app_name = name or self.request.app_name

    def learn_end_user(self, user: str | None, app_id: str | None) -> None:
        """The end user as the app's own records name them (Dify's session id)."""
        if self._finished or "user" in self._learned:
            return
        self._learned.add("user")
        self.request.user = user or self.request.user
        if app_id and "app" not in self._learned:
            self.request.app_id = app_id

    def learn_model(self, model: str | None, provider: str | None, *, source: str) -> None:
        """A model the chat called; the best source (see model_calls.SOURCES) wins."""
        rank = model_calls.SOURCES.index(source)
        if self._finished or not model or rank >= self._model_source:
            return
        self._model_source = rank
        self._learned.add("model")
        self.request.model, self.request.provider = model, provider

    def record_exception(self, exception: BaseException) -> None:
        """Note an exception raised while serving the chat, once; it is put on the chat
        span when the chat ends, unless the response reports the same cause itself."""
        if self._finished or any(exception is seen for seen, _at in self._raised):
            return
        self._raised.append((exception, time_ns()))
        parent = self._started.parent
        if parent.is_recording():
            # The server instrumentation records the same exception on its span: say so,
            # and the mapping stores it once, from here, with the chat's context.
            parent.set_attribute(sc.CHATSPAN_EXCEPTION_ON_CHAT_SPAN, type(exception).__name__)

    # -- response ------------------------------------------------------------------

    def response_started(self, status_code: int, content_type: str | None) -> None:
        self._status_code = status_code
        if not self.span.is_recording():
            return  # not sampled: nothing read from the answer would be kept
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type == "text/event-stream":
            self._sse = EventBuffer()
        elif media_type.endswith("json"):
            self._json = bytearray()

    @property
    def reads_every_chunk(self) -> bool:
        """Until a stream's first answer piece, each chunk is read as soon as it is sent,
        so that the time to the first piece is the time it went out; after it, chunks
        are read in batches."""
        return self._sse is not None and self._first_piece_ns is None

    def body_chunks(self, chunks: Sequence[bytes]) -> None:
        """See a run of response body chunks, after they have gone to the client."""
        events = self._sse
        if events is not None:
            if events.add(chunks) or self._first_piece_ns is None:
                self._read_events(events.take())
                if self._first_piece_ns is None and self.response.answer.started:
                    self._first_piece_ns = time_ns()
        elif self._json is not None:
            run = b"".join(chunks)
            if len(self._json) + len(run) <= self._telemetry.capture.max_request_bytes:
                self._json += run
            else:
                self._json = None  # too big to be a chat answer worth parsing
                self.response.attributes[sc.CHATSPAN_RESPONSE_CAPTURED] = False

    def finish(self, *, cancelled: bool = False) -> None:
        """End the chat span: the response is complete, or the client went away."""
        if self._finished:
            return
        self._finished = True
        span = self.span
        model_calls.chat_ended(span.get_span_context().trace_id)
        if not span.is_recording():
            return  # not sampled: nothing to read, and ending it would do nothing
        if self._status_code in REFUSED_STATUSES:
            self._end_refused(span)
            return
        if self._sse is not None:
            self._read_events(self._sse.take(final=True))
        elif self._json:
            self._read_json_body(bytes(self._json))
        shape, response = self._route.shape, self.response
        raised = [(e, at) for e, at in self._raised if not shape.explains(e, response)]
        cancelled = cancelled and not raised  # a stream that raised failed; it was not left
        self._note_server_error(raised)
        self._add_exception_events(raised)
        span.set_attributes(
            {
                **learned_attributes(self.request, self._learned),
                **input_attributes(self.request, self._telemetry),
                **response_attributes(
                    self.request,
                    response,
                    self._telemetry,
                    time_to_first_piece_s=self._time_to_first_piece_s(),
                    cancelled=cancelled,
                ),
            }
        )
        if "app" in self._learned:
            span.update_name(span_name(self._route, self.request))
        failure = self._failure(raised)
        if failure and not cancelled:
            span.set_attribute(sc.ERROR_TYPE, failure)
            span.set_status(Status(StatusCode.ERROR, failure))
        span.end()

    def _time_to_first_piece_s(self) -> float | None:
        first = self._first_piece_ns
        return None if first is None else (first - self.start_ns) / 1e9

    def _end_refused(self, span: trace.Span) -> None:
        """The app refused the request: the span says so, and no chat row is made of it."""
        span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, self._status_code)
        self._add_exception_events(self._raised)
        _refused.add(1, {sc.HTTP_RESPONSE_STATUS_CODE: self._status_code})
        span.end()

    def _add_exception_events(self, raised: list[tuple[BaseException, int]]) -> None:
        span, redact = self.span, self._telemetry.redact
        for exception, at in raised:
            span.record_exception(
                exception,
                attributes=exception_attributes(redact, exception),
                timestamp=at,
                escaped=True,
            )
        for found in self.response.exceptions:
            span.add_event(
                sc.EXCEPTION_EVENT,
                {
                    **redact_values(redact, sc.present(found.attributes)),
                    sc.EXCEPTION_TYPE: found.type,
                    sc.EXCEPTION_MESSAGE: redact(found.message),
                    sc.CHATSPAN_REDACTED: True,
                },
            )

    def _read_events(self, events: bytes) -> None:
        """Read a run of complete SSE events: text pieces in bulk, others one by one."""
        shape, response = self._route.shape, self.response
        pieces: list[bytes] = []
        for data in event_data(events):
            # The first event is always parsed: it names the message and conversation.
            if response.message_id is not None and (piece := shape.piece(data)) is not None:
                pieces.append(piece)
                continue
            if len(data) > _MAX_PARSED_EVENT_BYTES or shape.never_parsed(data):
                continue  # audio, files, end markers: never captured
            if pieces:  # keep the order: a later event may replace the answer so far
                response.answer.append(decode_pieces(pieces))
                pieces.clear()
            try:
                event = json.loads(data.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(event, dict):
                shape.read_event(event, response)
        if pieces:
            response.answer.append(decode_pieces(pieces))

    def _read_json_body(self, body: bytes) -> None:
        try:
            data = json.loads(body.decode("utf-8", "replace"))
        except ValueError:
            return
        if isinstance(data, dict):
            self._route.shape.read_response(data, self.response)

    def _note_server_error(self, raised: list[tuple[BaseException, int]]) -> None:
        """A 5xx answer with no exception seen (the app handled it itself) is still an error."""
        status = self._status_code
        if status is None or status < 500 or raised or self.response.exceptions:
            return
        code = self.response.failed
        self.response.exceptions.append(
            ExceptionFacts(
                type=f"{self._route.shape.name}.{code}" if code else f"http.{status}",
                message=self.response.error_message or f"the chat route answered HTTP {status}",
            )
        )

    def _failure(self, raised: list[tuple[BaseException, int]]) -> str | None:
        """Why the chat failed, if it did: the response said so, its status did, or it
        raised."""
        if self.response.failed:
            return self.response.failed
        status = self._status_code
        if status is not None and status >= 400:
            return str(status)
        return type(raised[0][0]).__name__ if raised else None
