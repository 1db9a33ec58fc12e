"""The shape of a chat route described by configuration (``CHATSPAN_CHAT_ROUTES``):
dotted JSON paths into the request and response, or an extractor function."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chatspan.instrumentation.facts import RequestFacts, ResponseFacts, text_or_none
from chatspan.instrumentation.shapes.base import Shape


@dataclass(frozen=True)
class CustomShape(Shape):
    """A chat route described by configuration: dotted JSON paths, or an extractor."""

    query: str | None = None
    user: str | None = None
    conversation: str | None = None
    model: str | None = None
    answer: str | None = None
    stream_answer: str | None = None
    response_conversation: str | None = None
    message_id: str | None = None
    input_tokens: str | None = None
    output_tokens: str | None = None
    extractor: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def read_request(self, body: Mapping[str, Any], facts: RequestFacts) -> None:
        facts.query = text_or_none(_path(body, self.query))
        facts.user = text_or_none(_path(body, self.user))
        facts.conversation_id = text_or_none(_path(body, self.conversation))
        facts.model = text_or_none(_path(body, self.model))
        if self.extractor is not None:
            found = self.extractor(body)
            for key in ("query", "user", "conversation_id", "model", "app_id"):
                if found.get(key) is not None:
                    setattr(facts, key, text_or_none(found[key]))
            if found.get("stream") is not None:
                facts.stream = bool(found["stream"])

    def read_response(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        answer = text_or_none(_path(body, self.answer))
        if answer is not None:
            facts.answer.replace(answer)
        self._common(body, facts)

    def read_event(self, event: Mapping[str, Any], facts: ResponseFacts) -> None:
        piece = text_or_none(_path(event, self.stream_answer or self.answer))
        if piece:
            facts.answer.append(piece)
        self._common(event, facts)

    def _common(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        conversation = text_or_none(_path(body, self.response_conversation))
        facts.conversation_id = facts.conversation_id or conversation
        facts.message_id = facts.message_id or text_or_none(_path(body, self.message_id))
        facts.usage(_path(body, self.input_tokens), _path(body, self.output_tokens))


def _path(body: Any, dotted: str | None) -> Any:
    """Follow a dotted path (``choices.0.delta.content``) through JSON."""
    if not dotted:
        return None
    value = body
    for part in dotted.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, Sequence) and not isinstance(value, str) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else None
        else:
            return None
    return value
