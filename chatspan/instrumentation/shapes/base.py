"""The shape of a family of chat routes: what every shape can say about its traffic.

A shape overrides what its protocol carries; the defaults read nothing, so a shape of
your own (``ChatRoute(..., shape=MyShape())``) needs only the methods it uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chatspan.instrumentation.facts import RequestFacts, ResponseFacts

# A JSON string's body (escapes included), for the patterns that find text pieces.
JSON_TEXT = rb'([^"\\]*+(?:\\.[^"\\]*+)*+)'


class Shape:
    """How one family of routes encodes a chat. Subclasses override what they support."""

    name = "custom"
    provider: str | None = None

    def read_credentials(
        self, authorization: str | None, params: Mapping[str, str], facts: RequestFacts
    ) -> None:
        """Fill `facts` from the request's credential and path parameters, as labels.

        The built-in rule: an ``<app_id>`` path parameter names the app."""
        facts.app_id = params.get("app_id") or facts.app_id

    def read_request(self, body: Mapping[str, Any], facts: RequestFacts) -> None:
        """Fill `facts` from the request JSON."""

    def read_response(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        """Fill `facts` from a blocking JSON answer (or a JSON error body)."""

    def read_event(self, event: Mapping[str, Any], facts: ResponseFacts) -> None:
        """Fill `facts` from one SSE event's JSON data."""

    def piece(self, data: bytes) -> bytes | None:
        """The text of a stream's text event (the body of its JSON string) when `data`
        is one whose only news is that text, found without parsing the JSON; None
        sends the event to the JSON parser and read_event. Most events of a streamed
        answer are such pieces, so this must cost a few C-level operations."""
        return None

    def never_parsed(self, data: bytes) -> bool:
        """Whether a stream event carries nothing a chat keeps (audio, an end marker),
        told from its bytes without parsing it; such an event is passed over."""
        return False

    def explains(self, exception: BaseException, facts: ResponseFacts) -> bool:
        """Whether an exception the app raised is a failure the response already reports
        (one cause, one error): then only the response's report is kept."""
        return False


def decode_pieces(pieces: list[bytes]) -> str:
    """Text pieces (JSON string bodies, as ``Shape.piece`` finds them) as one string."""
    raw = b"".join(pieces)
    if b"\\" not in raw:
        return raw.decode("utf-8", "replace")
    text: str = json.loads(b'"' + raw + b'"')
    return text
