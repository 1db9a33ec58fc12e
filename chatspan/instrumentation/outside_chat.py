"""Exceptions of requests that are not chats: they still reach the ``error`` table."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from chatspan import semconv as sc
from chatspan.instrumentation.redaction import exception_attributes
from chatspan.instrumentation.telemetry import ChatTelemetry


def record_outside_chat(
    telemetry: ChatTelemetry, exception: BaseException, method: str, route: str
) -> None:
    """Record an exception of a request that is not a chat.

    On the current span when there is one (the server span): recorded as the server
    instrumentation records it, but redacted, so when it records the same exception
    again (in clear: chatspan cannot stop that) the mapping, which redacts that copy,
    stores the two copies once. Without a server span, on a span of its own,
    so that the error still reaches the ``error`` table.
    """
    attributes = exception_attributes(telemetry.redact, exception)
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exception, attributes=attributes)
        span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        return
    with telemetry.tracer.start_as_current_span(
        f"{method} {route}",
        kind=SpanKind.SERVER,
        attributes={sc.HTTP_ROUTE: route, "http.request.method": method},
        record_exception=False,
        set_status_on_exception=False,
    ) as error_span:
        error_span.record_exception(exception, attributes=attributes)
        error_span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
