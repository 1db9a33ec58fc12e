"""What every chat request of an instrumented process shares: the tracer, the chat
routes, and how much content a span may carry, redacted how."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.trace import Tracer

from chatspan.config import CaptureSettings
from chatspan.instrumentation.redaction import Redactor
from chatspan.instrumentation.routing import Router


@dataclass(frozen=True)
class ChatTelemetry:
    """What every chat request of an instrumented process shares."""

    tracer: Tracer
    router: Router
    capture: CaptureSettings
    redact: Redactor

    def content(self, text: str | None) -> str | None:
        """Text as a chat span may carry it: capped, then redacted; None for no text."""
        if not text:
            return None
        return self.redact(text[: self.capture.max_content_chars])
