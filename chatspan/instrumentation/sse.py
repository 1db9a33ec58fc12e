"""Server-Sent Events, read in batches with bounded memory.

The response bytes are seen exactly as they go to the client, in whatever chunks the
app produced. :class:`EventBuffer` collects them and hands out runs of complete events
(a batch at a time, or at the end of the stream), keeping at most one event's worth of
an unfinished one; an event larger than the cap (base64 audio, say) is dropped as it
passes, never held whole.

Events are read as the SSE specification (WHATWG HTML, "Server-sent events") reads
them: a line ends in CR LF, LF or a bare CR; an event ends at a blank line; its data
is the value of each of its ``data`` lines (one space after the colon dropped), joined
with LF. :func:`event_data` takes a batch's data with one regular expression when no
event has more than one ``data`` line, as in Dify's and OpenAI's streams, so the many
small text events of a streamed answer cost little Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

DEFAULT_MAX_EVENT_BYTES = 256 * 1024
DEFAULT_BATCH_BYTES = 128 * 1024


class EventBuffer:
    """Stream bytes in; runs of complete events out, once a batch is full or at the end."""

    def __init__(
        self,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._tail = b""  # the start of an event whose end has not arrived
        self._max = max_event_bytes
        self._batch = batch_bytes
        self._skipping = False  # inside an oversized event: drop bytes until its end
        self.skipped_events = 0

    def add(self, chunks: Sequence[bytes]) -> bool:
        """Keep a run of chunks; True when enough has come to be read as a batch."""
        self._chunks.extend(chunks)
        self._size += sum(map(len, chunks))
        return self._size >= self._batch

    def take(self, *, final: bool = False) -> bytes:
        """The complete events received so far (with LF line ends), and forget them.

        At the end of the stream an unterminated last event counts as complete.
        """
        data = b"".join([self._tail, *self._chunks])
        self._chunks.clear()
        self._size = 0
        held = b""
        if b"\r" in data:
            if data.endswith(b"\r") and not final:
                data, held = data[:-1], b"\r"  # a CR LF may be cut between two chunks
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._skipping:
            end = data.find(b"\n\n")
            if end < 0:
                self._tail = data[-2:] + held  # may hold the first half of the separator
                return b""
            data = data[end + 2 :]
            self._skipping = False
        if final:
            self._tail = b""
            return data
        cut = data.rfind(b"\n\n")
        complete, tail = (data[: cut + 2], data[cut + 2 :]) if cut >= 0 else (b"", data)
        self._tail = tail + held
        if len(self._tail) > self._max:
            self._tail = self._tail[-2:]
            self._skipping = True
            self.skipped_events += 1
        return complete

    @property
    def held(self) -> int:
        """Bytes held now: the current batch and an unfinished event."""
        return self._size + len(self._tail)


def event_data(events: bytes) -> list[bytes]:
    """The data of each event of a run of complete events (LF line ends), in order."""
    if _CONTINUED_DATA.search(events) is None:
        # Every data line is the first line of its event: each is an event's data.
        # Dify and OpenAI stream only such events, read here with one expression.
        return _DATA_LINE.findall(events)
    found = []
    for event in events.split(b"\n\n"):
        lines = _DATA_LINE.findall(event)
        if lines:
            found.append(b"\n".join(lines))
    return found


# A data line: the field name, then a colon and its value (one space dropped) or nothing.
_DATA_LINE = re.compile(rb"^data(?:: ?(.*)|)$", re.MULTILINE)
# A data line after another line of its event (which may be a data line too).
_CONTINUED_DATA = re.compile(rb"\n(?<=[^\n]\n)data")
