"""One chat request, from its body to the last byte of its answer, as one span.

:class:`ChatCall` is protocol-neutral: the WSGI and ASGI adapters hand it the request
body, the response status and headers, and each body chunk as it goes to the client;
it keeps only what it needs (capped text, a bounded SSE buffer), and turns it into the
chat span's attributes and ``exception`` events when the response ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from chatspan import semconv as sc
from chatspan.config import CaptureSettings
from chatspan.instrumentation.profiles import (
    WORKFLOW,
    AnswerText,
    ExceptionFacts,
    RequestFacts,
    ResponseFacts,
    RouteMatch,
    Router,
    app_id_from_key,
    content_text,
    decode_pieces,
)
from chatspan.instrumentation.redaction import Redactor
from chatspan.instrumentation.sse import EventBuffer, data_lines

_logger = logging.getLogger(__name__)

# Events bigger than this are not chat text (base64 audio, file payloads): never parsed.
_MAX_PARSED_EVENT_BYTES = 64 * 1024


@dataclass(frozen=True)
class ChatTelemetry:
    """What every chat request of an instrumented process shares."""

    tracer: Tracer
    router: Router
    capture: CaptureSettings
    redact: Redactor


class ChatCall:
    """The chat span of one request, and what the request and response said."""

    def __init__(
        self, telemetry: ChatTelemetry, match: RouteMatch, authorization: str | None
    ) -> None:
        self._telemetry = telemetry
        self._route = match.route
        self.start_ns = time_ns()
        self.request = RequestFacts(
            operation=match.route.operation,
            app_id=match.params.get("app_id") or app_id_from_key(authorization),
        )
        self.response = ResponseFacts(answer=AnswerText(telemetry.capture.max_content_chars))
        self.span: trace.Span | None = None
        self._context: otel_context.Context | None = None
        self._parent: trace.Span = trace.INVALID_SPAN
        self._recorded: set[int] = set()
        self._request_captured = True
        self._status_code: int | None = None
        self._sse: EventBuffer | None = None
        self._json: bytearray | None = None
        self._first_chunk_ns: int | None = None
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

    def start_span(self) -> None:
        """Open the chat span as a child of the current span (the server span, if any)."""
        if self.span is not None:
            return
        parent_context = otel_context.get_current()
        self._parent = trace.get_current_span(parent_context)
        request = self.request
        self.span = self._telemetry.tracer.start_span(
            f"{request.operation} {request.app_id or request.model or self._route.shape.name}",
            context=parent_context,
            kind=SpanKind.INTERNAL,
            start_time=self.start_ns,
            attributes=self._request_attributes(),
        )

    def context(self) -> otel_context.Context:
        """A context in which the chat span is current, for work done on its behalf."""
        if self._context is None:
            self.start_span()
            self._context = trace.set_span_in_context(self.span)
        return self._context

    def record_exception(self, exception: BaseException) -> None:
        """Put an exception raised while serving the chat on the chat span, once."""
        if id(exception) in self._recorded or self._finished:
            return
        self._recorded.add(id(exception))
        self.start_span()
        kind = type(exception).__name__
        self.span.record_exception(
            exception,
            attributes={sc.EXCEPTION_MESSAGE: self._telemetry.redact(str(exception))},
            escaped=True,
        )
        self.span.set_attribute(sc.ERROR_TYPE, kind)
        self.span.set_status(Status(StatusCode.ERROR, kind))
        if self._parent.is_recording():
            # The server instrumentation records the same exception on its span: say so,
            # and the mapping stores it once, from here, with the chat's context.
            self._parent.set_attribute(sc.CHATSPAN_EXCEPTION_ON_CHAT_SPAN, kind)

    # -- response ------------------------------------------------------------------

    def response_started(self, status_code: int, content_type: str | None) -> None:
        self._status_code = status_code
        self.start_span()
        if not self.span.is_recording():
            return  # not sampled: nothing read from the answer would be kept
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type == "text/event-stream":
            self._sse = EventBuffer()
        elif media_type.endswith("json"):
            self._json = bytearray()

    def first_chunk_sent(self) -> None:
        """The first byte of the answer went to the client: time to first chunk."""
        if self._first_chunk_ns is None:
            self._first_chunk_ns = time_ns()

    def body_chunks(self, chunks: Sequence[bytes]) -> None:
        """See a run of response body chunks, after they have gone to the client."""
        events = self._sse
        if events is not None:
            if events.add(chunks):
                self._read_events(events.take())
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
        self.start_span()
        self._finished = True
        span = self.span
        if not span.is_recording():
            return  # not sampled: nothing to read, and ending it would do nothing
        if self._sse is not None:
            self._read_events(self._sse.take(final=True))
        elif self._json:
            self._read_json_body(bytes(self._json))
        self._note_server_error()
        for found in self.response.exceptions:
            span.add_event(
                sc.EXCEPTION_EVENT,
                {
                    sc.EXCEPTION_TYPE: found.type,
                    sc.EXCEPTION_MESSAGE: self._telemetry.redact(found.message),
                    **sc.present(found.attributes),
                },
            )
        span.set_attributes({**self._input_attributes(), **self._response_attributes(cancelled)})
        failure = self._failure()
        if failure and not cancelled:
            span.set_attribute(sc.ERROR_TYPE, failure)
            span.set_status(Status(StatusCode.ERROR, failure))
        span.end()

    def _read_events(self, events: bytes) -> None:
        """Read a run of complete SSE events: text pieces in bulk, others one by one."""
        shape, response = self._route.shape, self.response
        pieces: list[bytes] = []
        for data in data_lines(events):
            # The first event is always parsed: it names the message and conversation.
            if response.message_id is not None and (piece := shape.piece(data)) is not None:
                pieces.append(piece)
                continue
            if data == b"[DONE]" or len(data) > _MAX_PARSED_EVENT_BYTES:
                continue  # the end marker; audio and files, which are never captured
            if b"tts_message" in data[:64]:
                continue
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

    def _note_server_error(self) -> None:
        """A 5xx answer with no exception seen (the app handled it itself) is still an error."""
        status = self._status_code
        if status is None or status < 500 or self._recorded or self.response.exceptions:
            return
        code = self.response.failed
        self.response.exceptions.append(
            ExceptionFacts(
                type=f"{self._route.shape.name}.{code}" if code else f"http.{status}",
                message=self.response.error_message or f"the chat route answered HTTP {status}",
            )
        )

    def _failure(self) -> str | None:
        """Why the chat failed, if it did: the response said so, or its status did."""
        if self.response.failed:
            return self.response.failed
        status = self._status_code
        if status is not None and status >= 400:
            return str(status)
        return None

    # -- attributes ----------------------------------------------------------------

    def _request_attributes(self) -> dict[str, Any]:
        """Who asks, where: the span's attributes from its start, before the view runs."""
        request, shape = self.request, self._route.shape
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: request.operation,
            sc.OPENINFERENCE_SPAN_KIND: "CHAIN" if request.operation == WORKFLOW else "LLM",
            sc.CHATSPAN_ROUTE: self._route.path,
            sc.GEN_AI_PROVIDER_NAME: shape.provider,
            sc.GEN_AI_REQUEST_MODEL: request.model,
            sc.GEN_AI_REQUEST_STREAM: request.stream,
            sc.GEN_AI_CONVERSATION_ID: request.conversation_id,
            sc.SESSION_ID: request.conversation_id,
            sc.USER_ID: request.user,
            sc.DIFY_APP_ID: request.app_id,
            **request.attributes,
        }
        if not self._request_captured:
            attributes[sc.CHATSPAN_REQUEST_CAPTURED] = False
        return sc.present(attributes)

    def _input_attributes(self) -> dict[str, Any]:
        """The question and the conversation so far, redacted. Set at the end, once the
        answer has gone out: redacting a long history never delays the view."""
        request = self.request
        if not self._telemetry.capture.capture_content:
            return {}
        if request.input_messages:
            messages = [
                (m.get("role"), self._content(content_text(m.get("content"))))
                for m in request.input_messages
            ]
            # The query is the last user message: redacted once, with the others.
            query = next((text for role, text in reversed(messages) if role == "user"), None)
        else:
            query = self._content(request.query)
            messages = [("user", query)] if query else []
        attributes = {sc.INPUT_VALUE: query} if query else {}
        if messages:
            attributes[sc.GEN_AI_INPUT_MESSAGES] = _messages_json(messages)
        return attributes

    def _response_attributes(self, cancelled: bool) -> dict[str, Any]:
        response, request = self.response, self.request
        attributes: dict[str, Any] = {
            sc.GEN_AI_RESPONSE_ID: response.message_id,
            sc.GEN_AI_RESPONSE_MODEL: response.model,
            sc.GEN_AI_USAGE_INPUT_TOKENS: response.input_tokens,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: response.output_tokens,
            **response.attributes,
        }
        if response.total_tokens != (response.input_tokens or 0) + (response.output_tokens or 0):
            attributes[sc.CHATSPAN_TOTAL_TOKENS] = response.total_tokens  # workflows: total only
        if request.conversation_id is None and response.conversation_id:
            attributes[sc.GEN_AI_CONVERSATION_ID] = response.conversation_id
            attributes[sc.SESSION_ID] = response.conversation_id
        if self._sse is not None and self._first_chunk_ns is not None:
            attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (
                self._first_chunk_ns - self.start_ns
            ) / 1e9
        if cancelled:
            attributes[sc.CHATSPAN_STATUS] = sc.STATUS_CANCELLED
        if self._telemetry.capture.capture_content and response.answer:
            answer = self._content(response.answer.text())
            attributes[sc.OUTPUT_VALUE] = answer
            attributes[sc.GEN_AI_OUTPUT_MESSAGES] = _messages_json([("assistant", answer)])
            if response.answer.truncated:
                attributes[sc.CHATSPAN_OUTPUT_TRUNCATED] = True
        return sc.present(attributes)

    def _content(self, text: str | None) -> str | None:
        if not text:
            return None
        return self._telemetry.redact(text[: self._telemetry.capture.max_content_chars])


def record_outside_chat(
    telemetry: ChatTelemetry, exception: BaseException, method: str, route: str
) -> None:
    """Record an exception of a request that is not a chat.

    On the current span when there is one (the server span): recorded exactly as the
    server instrumentation records it, so when it records the same exception again the
    mapping stores the two copies once. Without a server span, on a span of its own,
    so that the error still reaches the ``error`` table.
    """
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exception)
        span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        return
    with telemetry.tracer.start_as_current_span(
        f"{method} {route}",
        kind=SpanKind.SERVER,
        attributes={sc.HTTP_ROUTE: route, "http.request.method": method},
        record_exception=False,
        set_status_on_exception=False,
    ) as error_span:
        error_span.record_exception(exception)
        error_span.set_status(Status(StatusCode.ERROR, type(exception).__name__))


def _messages_json(messages: list[tuple[Any, str | None]]) -> str:
    """Messages in the GenAI conventions' form, a role and text parts each, as JSON.

    Written out by hand around the json module's string encoder: the same text as
    ``json.dumps(..., ensure_ascii=False)`` of the nested dicts, at a tenth of the cost,
    which every chat pays twice.
    """
    return (
        "["
        + ", ".join(
            '{"role": '
            + _json_string(str(role or "user"))
            + ', "parts": [{"type": "text", "content": '
            + _json_string(text or "")
            + "}]}"
            for role, text in messages
        )
        + "]"
    )
