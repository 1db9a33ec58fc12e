"""OTLP trace requests (protobuf or JSON) decoded into :class:`SpanData`, within limits.

Spans forwarded by a collector then go through the same mapping and writer as spans
exported directly, so a chat looks the same whichever road it took. In OTLP/JSON, trace
and span ids are hex strings and 64-bit integers may be strings, as the OTLP
specification says (not protobuf's own JSON mapping, which would use base64).

A request costs memory in proportion to what is kept, not to what was sent: a body of
one span with a million attributes once inflated to a gigabyte of objects. So decoding
applies the limits while it reads (:class:`DecodeLimits`): spans past the request's
cap are rejected (reported in ``partial_success``), attributes past a span's or an
event's cap are dropped and counted (the row's ``chatspan.attributes_dropped``, as the
SDK's own limits count them), events past a span's cap are dropped, and array and map
values are cut in length, depth and, per attribute set, in the number of values.
Protobuf is read straight from the wire format, one span at a time, skipping what is
over a cap without building it; JSON is parsed with hooks that build compact values
(after a check that it is not nested deeper than any OTLP request is).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from chatspan import semconv as sc
from chatspan.records import SpanData, SpanEvent

STATUS_ERROR = 2
MAX_VALUE_DEPTH = 8  # nested arrays / key-value lists deeper than this are cut
MAX_JSON_NESTING = 64  # an OTLP/JSON request with values MAX_VALUE_DEPTH deep nests ~45 levels
VALUES_PER_ATTRIBUTE = 8  # an attribute set keeps 8x its attribute cap in values, nested ones too
_NANOS_MAX = 2**64 - 1  # timestamps are fixed64


@dataclass(frozen=True)
class DecodeLimits:
    """What one request may make the decoder keep (``CHATSPAN_INGEST_MAX_*``)."""

    spans: int = 16_384  # per request; twice the Collector's default batch
    attributes: int = 128  # per span, per event, per array or map value (the SDK's 128)
    events: int = 128  # per span (the SDK's 128)

    @property
    def values(self) -> int:
        """Values an attribute set keeps in all, counting the elements of arrays and maps."""
        return VALUES_PER_ATTRIBUTE * self.attributes


class OtlpDecodeError(ValueError):
    """The body is not an OTLP trace request; the message says what is wrong."""


class _SpanError(ValueError):
    """One span cannot be read; the rest of the request can."""


@dataclass
class DecodedRequest:
    """The spans of a request, decoded one at a time as `spans` is iterated; `rejected`,
    `reason` and `values` are complete once it is exhausted."""

    spans: Iterator[SpanData] = field(default_factory=lambda: iter(()))
    rejected: int = 0
    reason: str | None = None  # why the first rejected span was rejected
    values: int = 0  # attribute values decoded so far: what the spans cost in memory

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected += count
        self.reason = self.reason or reason

    def over_span_cap(self, limits: DecodeLimits, count: int) -> None:
        self.reject(
            f"more than {limits.spans} spans in one request (CHATSPAN_INGEST_MAX_SPANS); "
            "the rest were rejected",
            count,
        )


class _AttributeSet:
    """One span's or one event's attributes, kept within the limits as they are read."""

    __slots__ = ("attributes", "cap", "dropped", "per_container", "values_left")

    def __init__(self, limits: DecodeLimits) -> None:
        self.attributes: dict[str, Any] = {}
        self.cap = limits.attributes
        self.per_container = limits.attributes
        self.values_left = limits.values
        self.dropped = 0

    def has_room(self) -> bool:
        if len(self.attributes) < self.cap and self.values_left > 0:
            return True
        self.dropped += 1
        return False


# -- protobuf -------------------------------------------------------------------------


class _Malformed(ValueError):
    pass


def decode_protobuf(body: bytes, limits: DecodeLimits | None = None) -> DecodedRequest:
    """Check the request's framing now (400 if broken); decode its spans when iterated."""
    limits = limits or DecodeLimits()
    decoded = DecodedRequest()
    try:
        located = _locate_spans(body, limits, decoded)
    except (_Malformed, UnicodeDecodeError) as error:
        raise OtlpDecodeError(f"not an OTLP ExportTraceServiceRequest: {error}") from None
    decoded.spans = _wire_spans(body, located, limits, decoded)
    return decoded


def _locate_spans(
    data: bytes, limits: DecodeLimits, decoded: DecodedRequest
) -> list[tuple[int, int, str | None]]:
    """Where each span lies in `data`, with its service name; spans over the cap counted."""
    found: list[tuple[int, int, str | None]] = []
    over = 0
    for number, wire, start, end in _fields(data, 0, len(data)):
        if number != 1 or wire != 2:  # ExportTraceServiceRequest.resource_spans
            continue
        service, scopes = None, []
        for number2, wire2, start2, end2 in _fields(data, start, end):
            if number2 == 1 and wire2 == 2:  # ResourceSpans.resource
                service = _wire_service_name(data, start2, end2)
            elif number2 == 2 and wire2 == 2:  # ResourceSpans.scope_spans
                scopes.append((start2, end2))
        for scope_start, scope_end in scopes:
            for number3, wire3, start3, end3 in _fields(data, scope_start, scope_end):
                if number3 == 2 and wire3 == 2:  # ScopeSpans.spans
                    if len(found) < limits.spans:
                        found.append((start3, end3, service))
                    else:
                        over += 1
    if over:
        decoded.over_span_cap(limits, over)
    return found


def _wire_spans(
    data: bytes,
    located: list[tuple[int, int, str | None]],
    limits: DecodeLimits,
    decoded: DecodedRequest,
) -> Iterator[SpanData]:
    for start, end, service in located:
        try:
            if end - start <= SMALL_SPAN_BYTES:
                span = _small_span(data[start:end], service, limits, decoded)
            else:
                span = _wire_span(data, start, end, service, limits, decoded)
        except (_Malformed, _SpanError, UnicodeDecodeError, DecodeError) as error:
            decoded.reject(f"a span could not be read: {error}")
            continue
        yield span


# A span this small is parsed by protobuf's own C parser (what it builds is at most a
# few times its size) and read within the same limits: faster than the wire reader
# below on ordinary chat spans (1.3 KiB each; 512 of them: 8 ms against 18 ms).
SMALL_SPAN_BYTES = 64 * 1024


def _small_span(
    body: bytes, service: str | None, limits: DecodeLimits, decoded: DecodedRequest
) -> SpanData:
    span = Span.FromString(body)
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        raise _SpanError("a span's trace_id must be 16 bytes and span_id 8 bytes")
    attributes = _proto_attributes(span.attributes, limits)
    events = tuple(_small_event(event, limits) for event in span.events[: limits.events])
    decoded.values += limits.values - attributes.values_left + len(events)
    for event in events:
        decoded.values += len(event.attributes)
    return SpanData(
        int.from_bytes(span.trace_id, "big"),
        int.from_bytes(span.span_id, "big"),
        span.name,
        span.start_time_unix_nano,
        span.end_time_unix_nano or None,
        span.status.code == STATUS_ERROR,
        attributes.attributes,
        events,
        service,
        attributes.dropped,
    )


def _small_event(event: Any, limits: DecodeLimits) -> SpanEvent:
    attributes = _proto_attributes(event.attributes, limits)
    return SpanEvent(event.name, event.time_unix_nano, attributes.attributes, attributes.dropped)


def _proto_attributes(key_values: Any, limits: DecodeLimits) -> _AttributeSet:
    into = _AttributeSet(limits)
    for index, kv in enumerate(key_values):
        if not into.has_room():
            into.dropped += len(key_values) - index - 1
            break
        into.attributes[kv.key] = _proto_value(kv.value, 0, into)
    return into


def _proto_value(value: AnyValue, depth: int, into: _AttributeSet) -> Any:
    into.values_left -= 1
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "bytes_value":
        return value.bytes_value
    if depth >= MAX_VALUE_DEPTH or kind not in ("array_value", "kvlist_value"):
        return None
    if kind == "array_value":
        items = []
        for item in value.array_value.values[: into.per_container]:
            if into.values_left <= 0:
                break
            items.append(_proto_value(item, depth + 1, into))
        return items
    mapping = {}
    for kv in value.kvlist_value.values[: into.per_container]:
        if into.values_left <= 0:
            break
        mapping[kv.key] = _proto_value(kv.value, depth + 1, into)
    return mapping


def _wire_span(
    data: bytes,
    start: int,
    end: int,
    service: str | None,
    limits: DecodeLimits,
    decoded: DecodedRequest,
) -> SpanData:
    attributes = _AttributeSet(limits)
    events: list[SpanEvent] = []
    at: dict[int, tuple[int, int]] = {}  # where the span's single fields lie
    for number, wire, a, b in _fields(data, start, end):
        if number == 9 and wire == 2:  # attributes
            _wire_key_value(data, a, b, attributes)
        elif number == 11 and wire == 2:  # events
            if len(events) < limits.events:
                events.append(_wire_event(data, a, b, limits))
        elif _SPAN_FIELDS.get(number) == wire:
            at[number] = (a, b)
    trace_id, span_id = data[slice(*at.get(1, (0, 0)))], data[slice(*at.get(2, (0, 0)))]
    if len(trace_id) != 16 or len(span_id) != 8:
        raise _SpanError("a span's trace_id must be 16 bytes and span_id 8 bytes")
    status = at.get(15)
    code = 0
    if status is not None:
        code = next((v for n, w, v, _ in _fields(data, *status) if n == 3 and w == 0), 0)
    decoded.values += limits.values - attributes.values_left
    for event in events:
        decoded.values += 1 + len(event.attributes)
    return SpanData(
        int.from_bytes(trace_id, "big"),
        int.from_bytes(span_id, "big"),
        data[slice(*at.get(5, (0, 0)))].decode(),
        int.from_bytes(data[slice(*at.get(7, (0, 0)))], "little"),
        int.from_bytes(data[slice(*at.get(8, (0, 0)))], "little") or None,
        code == STATUS_ERROR,
        attributes.attributes,
        tuple(events),
        service,
        attributes.dropped,
    )


# Span fields read once (the last one wins): number -> wire type. trace_id, span_id,
# name, start_time_unix_nano, end_time_unix_nano (fixed64), status.
_SPAN_FIELDS = {1: 2, 2: 2, 5: 2, 7: 1, 8: 1, 15: 2}


def _wire_event(data: bytes, start: int, end: int, limits: DecodeLimits) -> SpanEvent:
    name, nanos = "", 0
    attributes = _AttributeSet(limits)
    for number, wire, a, b in _fields(data, start, end):
        if number == 3 and wire == 2:
            _wire_key_value(data, a, b, attributes)
        elif number == 1 and wire == 1:
            nanos = int.from_bytes(data[a:b], "little")
        elif number == 2 and wire == 2:
            name = data[a:b].decode()
    return SpanEvent(name, nanos, attributes.attributes, attributes.dropped)


def _wire_key_value(data: bytes, start: int, end: int, into: _AttributeSet) -> None:
    if not into.has_room():
        return  # dropped and counted, without reading it
    key, value = "", None
    for number, wire, a, b in _fields(data, start, end):
        if wire == 2 and number == 1:
            key = data[a:b].decode()
        elif wire == 2 and number == 2:
            value = _wire_value(data, a, b, 0, into)
    into.attributes[key] = value


def _wire_value(data: bytes, start: int, end: int, depth: int, into: _AttributeSet) -> Any:
    """An AnyValue; containers keep what the attribute set still has room for."""
    into.values_left -= 1
    value: Any = None
    for number, wire, a, b in _fields(data, start, end):  # a oneof: the last one wins
        if wire == 2:
            if number == 1:
                value = data[a:b].decode()
            elif number == 7:
                value = data[a:b]
            elif number in (5, 6):
                value = None if depth >= MAX_VALUE_DEPTH else [] if number == 5 else {}
                if value is not None:
                    _wire_container(data, a, b, depth + 1, into, value)
        elif wire == 0:
            if number == 3:
                value = a - (1 << 64) if a >= 1 << 63 else a  # int64, two's complement
            elif number == 2:
                value = bool(a)
        elif wire == 1 and number == 4:
            (value,) = struct.unpack_from("<d", data, a)
    return value


def _wire_container(
    data: bytes, start: int, end: int, depth: int, into: _AttributeSet, out: list | dict
) -> None:
    """The values of an ArrayValue (into a list) or a KeyValueList (into a dict)."""
    for number, wire, a, b in _fields(data, start, end):
        if len(out) >= into.per_container or into.values_left <= 0:
            return  # cut: the rest is not read at all
        if number != 1 or wire != 2:
            continue
        if isinstance(out, list):
            out.append(_wire_value(data, a, b, depth, into))
            continue
        key, value = "", None
        for number2, wire2, a2, b2 in _fields(data, a, b):
            if wire2 == 2 and number2 == 1:
                key = data[a2:b2].decode()
            elif wire2 == 2 and number2 == 2:
                value = _wire_value(data, a2, b2, depth, into)
        out[key] = value


def _wire_service_name(data: bytes, start: int, end: int) -> str | None:
    """A Resource's service.name, reading only the keys of the others."""
    for number, wire, a, b in _fields(data, start, end):
        if number != 1 or wire != 2:
            continue
        key_value = dict((n, (x, y)) for n, w, x, y in _fields(data, a, b) if w == 2)
        key = key_value.get(1)
        if key is not None and data[key[0] : key[1]] == sc.SERVICE_NAME.encode():
            found = _AttributeSet(DecodeLimits())
            value_at = key_value.get(2)
            value = _wire_value(data, *value_at, 0, found) if value_at else None
            return value if isinstance(value, str) else None
    return None


def _fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """The fields of the message in ``data[pos:end]``: (number, wire type, a, b), where
    (a, b) is a varint's value and its end, or where a length-delimited or fixed-size
    value lies. Nothing is copied; a field that runs past `end` is malformed."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield number, 0, value, pos
            continue
        if wire == 2:
            length, pos = _varint(data, pos, end)
            start = pos
        elif wire == 1:
            start, length = pos, 8
        elif wire == 5:
            start, length = pos, 4
        else:
            raise _Malformed(f"wire type {wire} (groups are not used by OTLP)")
        pos = start + length
        if pos > end:
            raise _Malformed("a field runs past the end of its message")
        yield number, wire, start, pos


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos < end and data[pos] < 0x80:
        return data[pos], pos + 1
    result = shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a varint longer than 10 bytes")
    raise _Malformed("a varint runs past the end of its message")


# -- JSON -----------------------------------------------------------------------------

_ANY_VALUE_KEYS = frozenset(
    {
        "stringValue",
        "string_value",
        "boolValue",
        "bool_value",
        "intValue",
        "int_value",
        "doubleValue",
        "double_value",
        "bytesValue",
        "bytes_value",
        "arrayValue",
        "array_value",
        "kvlistValue",
        "kvlist_value",
    }
)
_KEY_VALUE_KEYS = frozenset({"key", "value"})


class _KeyValue(tuple):
    """A parsed OTLP/JSON KeyValue: (key, value). JSON itself never makes a tuple."""

    __slots__ = ()


_DROPPED = _KeyValue((None, None))  # a KeyValue past what its attribute set could keep


class _Container:
    """A parsed arrayValue (values) or kvlistValue (KeyValues), cut to the per-container
    cap while parsing."""

    __slots__ = ("is_map", "items")

    def __init__(self, items: list, is_map: bool) -> None:
        self.items, self.is_map = items, is_map


def decode_json(body: bytes, limits: DecodeLimits | None = None) -> DecodedRequest:
    """Parse the request now (400 if it is not one); convert its spans when iterated."""
    limits = limits or DecodeLimits()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise OtlpDecodeError("the body is not valid UTF-8") from None
    deepest = json_nesting(body, MAX_JSON_NESTING)
    if deepest > MAX_JSON_NESTING:
        raise OtlpDecodeError(
            f"the body nests more than {MAX_JSON_NESTING} levels deep; no OTLP request does"
        )
    try:
        request = json.loads(text, object_pairs_hook=_Compactor(limits))
    except ValueError as error:
        raise OtlpDecodeError(f"the body is not JSON: {error}") from None
    del text
    if not isinstance(request, Mapping):
        raise OtlpDecodeError("an OTLP/JSON request is an object with resourceSpans")
    decoded = DecodedRequest()
    located: list[tuple[list, int, Any]] = []  # (its list, index, service): freed as read
    over = 0
    for resource_spans in _list(request, "resourceSpans", "resource_spans"):
        resource = _get(resource_spans, "resource") or {}
        service = _json_attributes(_get(resource, "attributes"), _AttributeSet(limits)).get(
            sc.SERVICE_NAME
        )
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            spans = _get(scope_spans, "spans")
            if spans is not None and not isinstance(spans, list):
                raise OtlpDecodeError("spans must be a list")
            for index in range(len(spans or ())):
                if len(located) < limits.spans:
                    located.append((spans, index, service))
                else:
                    over += 1
                    spans[index] = None
    if over:
        decoded.over_span_cap(limits, over)
    decoded.spans = _json_spans(located, limits, decoded)
    return decoded


def _json_spans(
    located: list[tuple[list, int, Any]], limits: DecodeLimits, decoded: DecodedRequest
) -> Iterator[SpanData]:
    for spans, index, service in located:
        span, spans[index] = spans[index], None  # the parsed span goes once it is read
        try:
            yield _json_span(span, service, limits, decoded)
        except (TypeError, ValueError, AttributeError) as error:
            decoded.reject(f"a span could not be read: {error}")


class _Compactor:
    """The parser's hook for each object: AnyValues become plain values and KeyValues
    pairs as they are parsed, so a request never holds a dict per attribute.

    Objects are finished in document order, a list's elements one after another; so a
    run of KeyValues (or of array elements) longer than an attribute set could keep is
    cut while parsing: the rest become a shared placeholder (a KeyValue counted as
    dropped), not objects. A run ends at any object holding ``attributes`` (a span, an
    event, a resource); a span's run may take in its first event's, which is why the
    run may be as long as all the values an attribute set keeps, not just its cap.
    """

    __slots__ = ("key_values_in_row", "per_container", "room", "values_in_row")

    def __init__(self, limits: DecodeLimits) -> None:
        self.per_container, self.room = limits.attributes, limits.values
        self.key_values_in_row = self.values_in_row = 0

    def __call__(self, pairs: list[tuple[str, Any]]) -> Any:
        if len(pairs) == 1 and pairs[0][0] in _ANY_VALUE_KEYS:
            self.values_in_row += 1
            if self.values_in_row > self.room:
                return None
            return _any_value(*pairs[0], self.per_container)
        self.values_in_row = 0
        if pairs and all(key in _KEY_VALUE_KEYS for key, _value in pairs):
            found = dict(pairs)
            if "key" in found:
                self.key_values_in_row += 1
                if self.key_values_in_row > self.room:
                    return _DROPPED
                return _KeyValue((found["key"], found.get("value")))
        if any(key == "attributes" for key, _value in pairs):
            self.key_values_in_row = 0
        return dict(pairs)


def _any_value(kind: str, found: Any, per_container: int) -> Any:
    if kind in ("stringValue", "string_value"):
        return found if isinstance(found, str) else _scalar_text(found)
    if kind in ("boolValue", "bool_value"):
        return bool(found) if isinstance(found, (bool, int, float, str)) else None
    if kind in ("intValue", "int_value"):
        try:
            return int(found) if isinstance(found, (int, str)) else None
        except ValueError:
            return None
    if kind in ("doubleValue", "double_value"):
        try:
            return float(found) if isinstance(found, (int, float, str)) else None
        except ValueError:
            return None
    if kind in ("bytesValue", "bytes_value"):
        try:
            return base64.b64decode(found, validate=True) if isinstance(found, str) else None
        except (ValueError, binascii.Error):
            return None
    values = _get(found, "values")
    if not isinstance(values, list):
        values = []
    del values[per_container:]
    return _Container(values, is_map=kind in ("kvlistValue", "kvlist_value"))


def _scalar_text(found: Any) -> str | None:
    return str(found) if isinstance(found, (bool, int, float)) else None


def json_nesting(body: bytes, limit: int) -> int:
    """How deep the JSON in `body` nests (stopping once past `limit`), read in slices
    without parsing it: parsing a deeper body recurses past Python's stack."""
    depth = deepest = 0
    in_string = False
    start, size = 0, len(body)
    view = memoryview(body)
    while start < size:
        end = min(start + _NESTING_SLICE, size)
        while end < size and body[end - 1] == 0x5C:  # never part an escape from its slash
            end += 1
        piece = bytes(view[start:end])
        if b"\\" in piece:  # escapes are inside strings: an escaped quote ends none
            piece = piece.replace(b"\\\\", b"").replace(b'\\"', b"")
        parts = piece.split(b'"')
        outside = b"".join(parts[1 if in_string else 0 :: 2])
        if len(parts) % 2 == 0:
            in_string = not in_string
        brackets = outside.translate(_BRACKET_STEPS, _NOT_BRACKETS)
        if brackets:
            highest = max(accumulate(memoryview(brackets).cast("b"), initial=depth))
            deepest = max(deepest, highest)
            if deepest > limit:
                return deepest
            depth += len(brackets) - 2 * brackets.count(b"\xff")
        start = end
    return deepest


_NESTING_SLICE = 1 << 20
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _json_span(span: Any, service: Any, limits: DecodeLimits, decoded: DecodedRequest) -> SpanData:
    if not isinstance(span, Mapping):
        raise TypeError("a span must be an object")
    trace_id = _hex_id(_get(span, "traceId", "trace_id"), 32, "traceId")
    span_id = _hex_id(_get(span, "spanId", "span_id"), 16, "spanId")
    status = _get(span, "status") or {}
    code = _get(status, "code") if isinstance(status, Mapping) else None
    attributes = _AttributeSet(limits)
    _json_attributes(_get(span, "attributes"), attributes)
    events = []
    for event in _list(span, "events"):
        if len(events) == limits.events:
            break
        event_attributes = _AttributeSet(limits)
        _json_attributes(_get(event, "attributes"), event_attributes)
        events.append(
            SpanEvent(
                str(_get(event, "name") or ""),
                _nanos(_get(event, "timeUnixNano", "time_unix_nano")),
                event_attributes.attributes,
                event_attributes.dropped,
            )
        )
        decoded.values += 1 + limits.values - event_attributes.values_left
    decoded.values += limits.values - attributes.values_left
    return SpanData(
        trace_id,
        span_id,
        _json_text(_get(span, "name")),
        _nanos(_get(span, "startTimeUnixNano", "start_time_unix_nano")),
        _nanos(_get(span, "endTimeUnixNano", "end_time_unix_nano")) or None,
        code in (STATUS_ERROR, "STATUS_CODE_ERROR"),
        attributes.attributes,
        tuple(events),
        service if isinstance(service, str) else None,
        attributes.dropped,
    )


def _json_attributes(key_values: Any, into: _AttributeSet) -> dict[str, Any]:
    if not isinstance(key_values, list):
        return into.attributes
    for kv in key_values:
        if kv is _DROPPED:
            into.dropped += 1
        elif isinstance(kv, _KeyValue) and isinstance(kv[0], str) and into.has_room():
            into.attributes[kv[0]] = _json_value(kv[1], 0, into)
    return into.attributes


def _json_value(value: Any, depth: int, into: _AttributeSet) -> Any:
    """A parsed AnyValue within the attribute set's room (other JSON is no value)."""
    into.values_left -= 1
    if isinstance(value, (str, bool, int, float, bytes)):
        return value
    if not isinstance(value, _Container) or depth >= MAX_VALUE_DEPTH:
        return None
    if value.is_map:
        mapping = {}
        for kv in value.items:
            if into.values_left <= 0:
                break
            if isinstance(kv, _KeyValue) and isinstance(kv[0], str):
                mapping[kv[0]] = _json_value(kv[1], depth + 1, into)
        return mapping
    items = []
    for item in value.items:
        if into.values_left <= 0:
            break
        items.append(_json_value(item, depth + 1, into))
    return items


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _scalar_text(value) or ""


def _get(mapping: Any, *names: str) -> Any:
    if not isinstance(mapping, Mapping):
        return None
    for name in names:
        if name in mapping:
            return mapping[name]
    return None


def _list(mapping: Any, *names: str) -> Iterator[Any]:
    value = _get(mapping, *names)
    if value is None:
        return iter(())
    if not isinstance(value, list):
        raise OtlpDecodeError(f"{names[0]} must be a list")
    return iter(value)


def _hex_id(value: Any, digits: int, name: str) -> int:
    if not isinstance(value, str) or len(value) != digits:
        raise ValueError(f"{name} must be {digits} hex digits")
    try:
        number = int(value, 16)
    except ValueError:
        raise ValueError(f"{name} must be {digits} hex digits") from None
    if not number:
        raise ValueError(f"{name} must not be all zeros")
    return number


def _nanos(value: Any) -> int:
    """A timestamp: whole nanoseconds since 1970 that fit OTLP's fixed64."""
    if value is None or value == "":
        return 0
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"timestamps must be whole nanoseconds, got {value!r}")
    if not isinstance(value, (int, float, str)) or isinstance(value, bool):
        raise ValueError("timestamps must be numbers or strings of digits")
    try:
        number = int(value)  # a string, as OTLP/JSON encodes 64-bit integers, or a number
    except ValueError:
        raise ValueError(f"timestamps must be whole nanoseconds, got {value!r:.40}") from None
    if not 0 <= number <= _NANOS_MAX:
        raise ValueError(f"timestamps must be between 0 and {_NANOS_MAX} nanoseconds")
    return number
