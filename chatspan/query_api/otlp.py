"""OTLP trace requests (protobuf or JSON) decoded into :class:`SpanData`.

Spans forwarded by a collector then go through the same mapping and writer as spans
exported directly, so a chat looks the same whichever road it took. In OTLP/JSON, trace
and span ids are hex strings and 64-bit integers may be strings, as the OTLP
specification says (not protobuf's own JSON mapping, which would use base64).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from chatspan import semconv as sc
from chatspan.records import SpanData, SpanEvent

STATUS_ERROR = 2
MAX_VALUE_DEPTH = 8  # nested arrays / key-value lists deeper than this are cut


class OtlpDecodeError(ValueError):
    """The body is not an OTLP trace request; the message says what is wrong."""


@dataclass
class DecodedRequest:
    spans: list[SpanData] = field(default_factory=list)
    rejected: int = 0
    reason: str | None = None  # why the first rejected span was rejected

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reason = self.reason or reason


def decode_protobuf(body: bytes) -> DecodedRequest:
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise OtlpDecodeError(f"not an OTLP ExportTraceServiceRequest: {error}") from None
    decoded = DecodedRequest()
    for resource_spans in request.resource_spans:
        service = _proto_service_name(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    decoded.reject("a span's trace_id must be 16 bytes and span_id 8 bytes")
                    continue
                decoded.spans.append(
                    SpanData(
                        int.from_bytes(span.trace_id, "big"),
                        int.from_bytes(span.span_id, "big"),
                        span.name,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano or None,
                        span.status.code == STATUS_ERROR,
                        _proto_attributes(span.attributes),
                        tuple(
                            SpanEvent(
                                event.name,
                                event.time_unix_nano,
                                _proto_attributes(event.attributes),
                            )
                            for event in span.events
                        ),
                        service,
                    )
                )
    return decoded


def decode_json(body: bytes) -> DecodedRequest:
    try:
        request = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise OtlpDecodeError("the body is not valid UTF-8") from None
    except ValueError as error:
        raise OtlpDecodeError(f"the body is not JSON: {error}") from None
    if not isinstance(request, Mapping):
        raise OtlpDecodeError("an OTLP/JSON request is an object with resourceSpans")
    decoded = DecodedRequest()
    for resource_spans in _list(request, "resourceSpans", "resource_spans"):
        resource = _get(resource_spans, "resource") or {}
        service = _json_attributes(_get(resource, "attributes")).get(sc.SERVICE_NAME)
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                try:
                    decoded.spans.append(_json_span(span, service))
                except (TypeError, ValueError, AttributeError) as error:
                    decoded.reject(f"a span could not be read: {error}")
    return decoded


def _json_span(span: Any, service: Any) -> SpanData:
    if not isinstance(span, Mapping):
        raise TypeError("a span must be an object")
    trace_id = _hex_id(_get(span, "traceId", "trace_id"), 32, "traceId")
    span_id = _hex_id(_get(span, "spanId", "span_id"), 16, "spanId")
    status = _get(span, "status") or {}
    code = _get(status, "code") if isinstance(status, Mapping) else None
    events = tuple(
        SpanEvent(
            str(_get(event, "name") or ""),
            _nanos(_get(event, "timeUnixNano", "time_unix_nano")),
            _json_attributes(_get(event, "attributes")),
        )
        for event in _list(span, "events")
    )
    return SpanData(
        trace_id,
        span_id,
        str(_get(span, "name") or ""),
        _nanos(_get(span, "startTimeUnixNano", "start_time_unix_nano")),
        _nanos(_get(span, "endTimeUnixNano", "end_time_unix_nano")) or None,
        code in (STATUS_ERROR, "STATUS_CODE_ERROR"),
        _json_attributes(_get(span, "attributes")),
        events,
        service if isinstance(service, str) else None,
    )


# -- protobuf values ------------------------------------------------------------------


def _proto_attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _proto_value(kv.value, 0) for kv in key_values}


def _proto_service_name(key_values: Any) -> str | None:
    for kv in key_values:
        if kv.key == sc.SERVICE_NAME:
            value = _proto_value(kv.value, 0)
            return value if isinstance(value, str) else None
    return None


def _proto_value(value: AnyValue, depth: int) -> Any:
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
    if depth >= MAX_VALUE_DEPTH:
        return None
    if kind == "array_value":
        return [_proto_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _proto_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return None


# -- JSON values ----------------------------------------------------------------------


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
    if value is None or value == "":
        return 0
    number = int(value)  # a string, as OTLP/JSON encodes 64-bit integers, or a number
    if number < 0:
        raise ValueError("timestamps must not be negative")
    return number


def _json_attributes(key_values: Any) -> dict[str, Any]:
    if not isinstance(key_values, list):
        return {}
    attributes = {}
    for kv in key_values:
        key = _get(kv, "key")
        if isinstance(key, str):
            attributes[key] = _json_value(_get(kv, "value"), 0)
    return attributes


def _json_value(value: Any, depth: int) -> Any:
    if not isinstance(value, Mapping) or depth > MAX_VALUE_DEPTH:
        return None
    if "stringValue" in value or "string_value" in value:
        found = _get(value, "stringValue", "string_value")
        return found if isinstance(found, str) else str(found)
    if "boolValue" in value or "bool_value" in value:
        return bool(_get(value, "boolValue", "bool_value"))
    if "intValue" in value or "int_value" in value:
        try:
            return int(_get(value, "intValue", "int_value"))
        except (TypeError, ValueError):
            return None
    if "doubleValue" in value or "double_value" in value:
        try:
            return float(_get(value, "doubleValue", "double_value"))
        except (TypeError, ValueError):
            return None
    if "bytesValue" in value or "bytes_value" in value:
        try:
            return base64.b64decode(_get(value, "bytesValue", "bytes_value"), validate=True)
        except (TypeError, ValueError, binascii.Error):
            return None
    if "arrayValue" in value or "array_value" in value:
        array = _get(value, "arrayValue", "array_value")
        values = _get(array, "values")
        return [_json_value(v, depth + 1) for v in values] if isinstance(values, list) else []
    if "kvlistValue" in value or "kvlist_value" in value:
        kvlist = _get(value, "kvlistValue", "kvlist_value")
        values = _get(kvlist, "values")
        if not isinstance(values, list):
            return {}
        return {
            kv["key"]: _json_value(_get(kv, "value"), depth + 1)
            for kv in values
            if isinstance(kv, Mapping) and isinstance(kv.get("key"), str)
        }
    return None
