"""What a chat's request and response said: the facts a chat span is made of.

Shapes fill them from the traffic (see ``shapes``), the app's own work refines them
(``ChatCall.learn_*``), and the chat span's attributes are built from them at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestFacts:
    """What a chat request says: who asks what, in which conversation."""

    operation: str
    query: str | None = None
    user: str | None = None
    conversation_id: str | None = None
    app_id: str | None = None
    app_name: str | None = None
    model: str | None = None
    provider: str | None = None  # the model's provider, when the chat learned it
    stream: bool | None = None
    input_messages: list[Mapping[str, Any]] | None = None  # OpenAI-style: gen_ai.input.messages
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExceptionFacts:
    """An error the response reported (an SSE error event, a failed workflow node)."""

    type: str
    message: str
    attributes: dict[str, Any] = field(default_factory=dict)


class AnswerText:
    """The answer as it is rebuilt from pieces, capped so a long stream stays small."""

    def __init__(self, limit: int) -> None:
        self._pieces: list[str] = []
        self._length = 0
        self._limit = limit
        self.truncated = False
        self.started = False  # a piece of text arrived (kept or not: it went to the client)

    def append(self, piece: str) -> None:
        if piece:
            self.started = True
        room = self._limit - self._length
        if room <= 0:
            self.truncated = self.truncated or bool(piece)
            return
        if len(piece) > room:
            piece, self.truncated = piece[:room], True
        self._pieces.append(piece)
        self._length += len(piece)

    def replace(self, text: str) -> None:
        self._pieces, self._length, self.truncated = [], 0, False
        self.append(text)

    def text(self) -> str:
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def __bool__(self) -> bool:
        return self._length > 0


@dataclass
class ResponseFacts:
    """What the response said, gathered from one JSON body or from many SSE events."""

    answer: AnswerText
    conversation_id: str | None = None
    message_id: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    failed: str | None = None  # why the chat failed (an error code), when the response says so
    error_message: str | None = None
    exceptions: list[ExceptionFacts] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    def usage(self, input_tokens: Any, output_tokens: Any, total_tokens: Any = None) -> None:
        """Token counts as the response gives them; a count it does not give is kept."""
        self.input_tokens = int_or(input_tokens, self.input_tokens)
        self.output_tokens = int_or(output_tokens, self.output_tokens)
        self.total_tokens = int_or(total_tokens, self.total_tokens)


def text_or_none(value: Any) -> str | None:
    """A JSON value as text: None when it is missing or empty, so that it is left out."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def int_or(value: Any, default: int | None = None) -> int | None:
    """A JSON value as a whole number, or `default` when it is none (a boolean is none)."""
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def content_text(content: Any) -> str | None:
    """OpenAI message content: a string, or a list of parts of which text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        ]
        return "".join(texts) or None
    return None
