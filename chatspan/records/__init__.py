"""Spans into rows: the record types (:mod:`.types`), the one span → records mapping
(:mod:`.mapping`), values as the tables take them (:mod:`.text`) and error fingerprints
(:mod:`.fingerprint`).

The names other packages use are exported here.
"""

from chatspan.records.fingerprint import fingerprint, row_id
from chatspan.records.mapping import (
    REFUSED_STATUSES,
    join_errors_to_chats,
    map_spans,
    map_spans_lazily,
    take_chat_context,
)
from chatspan.records.text import MAX_ID_CHARS, MAX_TEXT_CHARS
from chatspan.records.types import (
    CHAT_COLUMNS,
    ERROR_COLUMNS,
    ChatRecord,
    ErrorRecord,
    MappedBatch,
    SpanData,
    SpanEvent,
)

__all__ = [
    "CHAT_COLUMNS",
    "ERROR_COLUMNS",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "REFUSED_STATUSES",
    "ChatRecord",
    "ErrorRecord",
    "MappedBatch",
    "SpanData",
    "SpanEvent",
    "fingerprint",
    "join_errors_to_chats",
    "map_spans",
    "map_spans_lazily",
    "row_id",
    "take_chat_context",
]
