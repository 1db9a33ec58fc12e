"""Values as the tables take them: text cleaned and capped, numbers in range, attributes
as JSON, and the hand-off to redaction.

Every database chatspan writes to must accept every value: no NUL in text (PostgreSQL
refuses it), valid UTF-8, integers that fit a BIGINT, finite floats, and sizes capped so
that one odd span cannot bloat a row (indexed columns stay small enough for a btree).

Text is redacted here too (``CHATSPAN_REDACT``, ``CHATSPAN_REDACT_PATTERNS``): chat
text, error messages, stack traces and the attributes copied into the row. Text
chatspan's instrumentation or manual API redacted before it made the span is marked
``chatspan.redacted`` and not redacted again, so the in-process road pays once; what
other instrumentations recorded (an exception a server instrumentation records in
clear) and what arrives over OTLP is redacted on its way into a row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from chatspan import semconv as sc

if TYPE_CHECKING:
    from chatspan.instrumentation.redaction import Redactor

MAX_TEXT_CHARS = 1_000_000
MAX_EXTRA_ATTRIBUTES = 256
MAX_ATTRIBUTE_CHARS = 8_192
MAX_ID_CHARS = 512  # ids, names and routes are indexed: btree entries must stay small
MAX_KEY_CHARS = 256  # of an attribute's name
_BIGINT_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def redaction_for(attributes: Mapping[str, Any]) -> Redactor | None:
    """None when chatspan redacted this span's (or event's) text already, else the
    configured redaction."""
    if attributes.get(sc.CHATSPAN_REDACTED):
        return None
    # Imported here: the instrumentation package imports the records package.
    from chatspan.instrumentation.redaction import configured_redactor  # noqa: PLC0415

    return configured_redactor()


def clean(text: str, limit: int) -> str:
    """Text every database accepts: no NUL (PostgreSQL refuses it), valid UTF-8, capped."""
    if len(text) > limit:
        text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates, as decoding garbage can leave
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def stored_identifier(value: Any) -> str | None:
    """A short identifier-like value (ids, names, routes) as a column stores it, capped
    at MAX_ID_CHARS; None for nothing or empty."""
    if type(value) is not str:
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray)):
            value = value.hex()
        elif isinstance(value, (list, tuple)):
            value = json.dumps(jsonable(value))
        else:
            value = str(value)
    return clean(value, MAX_ID_CHARS) or None


def stored_text(value: Any, redact: Redactor | None = None) -> str | None:
    """Chat content or an error text as a column stores it: kept whole up to
    MAX_TEXT_CHARS, and redacted when `redact` is given; None for nothing or empty."""
    if type(value) is not str:
        if value is None:
            return None
        value = "\n".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    text = clean(value, MAX_TEXT_CHARS)
    return (redact(text) if redact else text) or None


def bigint_or_none(value: Any) -> int | None:
    """A whole number that fits a BIGINT column, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -_BIGINT_MAX <= number <= _BIGINT_MAX else None


def finite_float_or_none(value: Any) -> float | None:
    """A finite number, or None (booleans, NaN and infinities are not stored)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def utc_datetime(ns: int) -> datetime:
    """Nanoseconds since the epoch as a UTC datetime (to the microsecond)."""
    return _EPOCH + timedelta(0, 0, ns // 1000)  # positional: a third faster than microseconds=


def jsonable(value: Any) -> Any:
    """An attribute value as JSON both PostgreSQL and SQLite accept."""
    if type(value) is str:
        return clean(value, MAX_ATTRIBUTE_CHARS)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -_BIGINT_MAX <= value <= _BIGINT_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value[:MAX_EXTRA_ATTRIBUTES]]
    if isinstance(value, Mapping):
        return {
            clean(str(k), MAX_KEY_CHARS): jsonable(v)
            for k, v in list(value.items())[:MAX_EXTRA_ATTRIBUTES]
        }
    return clean(str(value), MAX_ATTRIBUTE_CHARS)


def extra_attributes(
    attributes: Mapping[str, Any],
    consumed: frozenset[str],
    dropped: int,
    redact: Redactor | None,
) -> dict[str, Any]:
    """The attributes no column holds, capped and redacted when `redact` is given;
    `dropped` were left out before this."""
    # One pass over the keys, as this runs for every record: the values of consumed keys
    # are never touched (reading them costs as much as the rest of this function).
    extra: dict[str, Any] = {}
    kept = 0
    for key in attributes:
        if key in consumed:
            continue
        if kept < MAX_EXTRA_ATTRIBUTES:
            value = jsonable(attributes[key])
            extra[clean(str(key), MAX_KEY_CHARS)] = (
                value if redact is None else _redacted(value, redact)
            )
            kept += 1
        else:
            dropped += 1
    if dropped:
        extra[sc.CHATSPAN_ATTRIBUTES_DROPPED] = dropped
    return extra


def _redacted(value: Any, redact: Redactor) -> Any:
    """A JSON value with its strings redacted (as attribute values: see Redactor.value)."""
    if type(value) is str:
        return redact.value(value)
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item, redact) for key, item in value.items()}
    return value
