"""Digests that name rows: a row's id, derived from its span, so that a span exported
twice is stored once; and an error's fingerprint, one per cause, so that the same error
groups together however its message's numbers and ids change and wherever the code was
installed."""

from __future__ import annotations

import hashlib
import re

_PYTHON_FRAME = re.compile(r'File "(?P<path>[^"]+)", line \d+, in (?P<function>\S+)')
_OTHER_FRAME = re.compile(r"^\s*at\s+(?P<frame>.+)$", re.MULTILINE)
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]+|\d+", re.IGNORECASE
)


def row_id(trace_hex: str, span_hex: str, event_index: int | None = None) -> str:
    """A 128-bit id (32 hex digits) derived from the span, so a re-export stores nothing new."""
    name = (
        f"{trace_hex}{span_hex}" if event_index is None else f"{trace_hex}{span_hex}:{event_index}"
    )
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:32]


def fingerprint(type_error: str, stacktrace: str | None, message: str | None) -> str:
    """Groups the same error: its type and code location, not the changing parts of its text."""
    frames = _frames(stacktrace) if stacktrace else []
    basis = frames if frames else [_normalise_message(message or "")]
    digest = hashlib.sha256("\n".join([type_error, *basis]).encode("utf-8", "replace"))
    return digest.hexdigest()[:32]


def _frames(stacktrace: str) -> list[str]:
    """Code locations without line numbers or install paths, which change between deploys."""
    python = [
        f"{m['path'].replace(chr(92), '/').rsplit('/', 1)[-1]}:{m['function']}"
        for m in _PYTHON_FRAME.finditer(stacktrace)
    ]
    if python:
        return python
    return [_VOLATILE.sub("#", m["frame"]).strip() for m in _OTHER_FRAME.finditer(stacktrace)]


def _normalise_message(message: str) -> str:
    return _VOLATILE.sub("#", message)[:500]
