"""An incremental, bounded parser for Server-Sent Events.

It sees the response bytes exactly as they go to the client, in whatever chunks the
app produced, and yields the ``data`` of each event. An event larger than the cap
(base64 audio, say) is skipped whole without being buffered, so memory per stream
stays bounded however long the stream runs.
"""

from __future__ import annotations

from collections.abc import Iterator

DEFAULT_MAX_EVENT_BYTES = 256 * 1024


class SSEParser:
    """Feed it byte chunks; it yields each complete event's (event name, data) pair."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_event_bytes
        self._skipping = False  # inside an oversized event: drop bytes until its end
        self.skipped_events = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[str | None, bytes]]:
        buffer = self._buffer
        buffer += chunk
        while True:
            end, separator = _event_end(buffer)
            if end < 0:
                if len(buffer) > self._max:
                    # Keep a tail long enough to find a separator split across chunks.
                    del buffer[:-3]
                    if not self._skipping:
                        self._skipping = True
                        self.skipped_events += 1
                return
            block = bytes(buffer[:end])
            del buffer[: end + separator]
            if self._skipping:
                self._skipping = False
                continue
            event = _parse_block(block)
            if event is not None:
                yield event


def _event_end(buffer: bytearray) -> tuple[int, int]:
    """Where the first event ends, and the length of the blank line that ends it."""
    lf = buffer.find(b"\n\n")
    crlf = buffer.find(b"\r\n\r\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, 2


def _parse_block(block: bytes) -> tuple[str | None, bytes] | None:
    name: str | None = None
    data: list[bytes] = []
    for line in block.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    if not data and name is None:
        return None  # a comment or keep-alive line
    return name, b"\n".join(data)
