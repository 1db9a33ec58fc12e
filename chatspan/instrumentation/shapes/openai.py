"""The OpenAI-compatible chat completions API's shape."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chatspan.instrumentation.facts import (
    ExceptionFacts,
    RequestFacts,
    ResponseFacts,
    content_text,
    text_or_none,
)
from chatspan.instrumentation.shapes.base import JSON_TEXT, Shape

_END_OF_STREAM = b"[DONE]"
# A text piece: a chunk whose delta is only content (the chunk carries no usage, no error).
_OPENAI_CONTENT = re.compile(rb'"delta": ?\{"content": ?"' + JSON_TEXT + rb'"\}[^{]*\}\Z')


class OpenAIShape(Shape):
    """The OpenAI-compatible chat completions API."""

    name = "openai"
    provider = "openai"

    def piece(self, data: bytes) -> bytes | None:
        if not data.startswith(b"{") or b'"usage"' in data or b'"error"' in data:
            return None
        delta = data.find(b'"delta"')  # the first choice's, with no other choice after it
        found = _OPENAI_CONTENT.match(data, delta) if delta > 0 else None
        return found.group(1) if found is not None else None

    def never_parsed(self, data: bytes) -> bool:
        return data == _END_OF_STREAM

    def read_request(self, body: Mapping[str, Any], facts: RequestFacts) -> None:
        messages = body.get("messages")
        if isinstance(messages, list):
            facts.input_messages = [m for m in messages if isinstance(m, Mapping)]
            for message in reversed(facts.input_messages):
                if message.get("role") == "user":
                    facts.query = content_text(message.get("content"))
                    break
        facts.model = text_or_none(body.get("model"))
        facts.stream = bool(body.get("stream")) if "stream" in body else False
        facts.user = text_or_none(body.get("user"))

    def read_response(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            message = choices[0].get("message")
            if isinstance(message, Mapping):
                facts.answer.replace(content_text(message.get("content")) or "")
        self._common(body, facts)
        error = body.get("error")
        if isinstance(error, Mapping):
            facts.failed = text_or_none(error.get("type")) or "error"
            facts.error_message = text_or_none(error.get("message"))

    def read_event(self, event: Mapping[str, Any], facts: ResponseFacts) -> None:
        choices = event.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, Mapping) else None
                if isinstance(delta, Mapping) and isinstance(delta.get("content"), str):
                    facts.answer.append(delta["content"])
        self._common(event, facts)
        error = event.get("error")
        if isinstance(error, Mapping):
            kind = text_or_none(error.get("type")) or "error"
            facts.failed = kind
            facts.exceptions.append(
                ExceptionFacts(
                    type=f"openai.{kind}", message=text_or_none(error.get("message")) or kind
                )
            )

    @staticmethod
    def _common(body: Mapping[str, Any], facts: ResponseFacts) -> None:
        facts.message_id = facts.message_id or text_or_none(body.get("id"))
        facts.model = text_or_none(body.get("model")) or facts.model
        read_usage(body.get("usage"), facts)


def read_usage(usage: Any, facts: ResponseFacts) -> None:
    """Token counts from a usage object in OpenAI's form, which Dify's follows too."""
    if isinstance(usage, Mapping):
        facts.usage(
            usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
        )


OPENAI = OpenAIShape()
