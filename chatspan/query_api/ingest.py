"""``POST /v1/traces``: OTLP/HTTP from an OpenTelemetry Collector into the same tables.

Protobuf (``application/x-protobuf``) or JSON (``application/json``), optionally
gzip-compressed. The body is limited before and after decompression (413), other
media types are 415, undecodable bodies 400; a database that does not answer is 503
with ``Retry-After``, so the collector keeps the batch and retries. Spans that cannot
be stored are reported in ``partial_success``; the rest of the batch is stored.
Authentication is a bearer key from ``CHATSPAN_INGEST_API_KEYS``.

Memory: decoding is what multiplies a body, so at most ``CHATSPAN_INGEST_MAX_CONCURRENT``
requests are decoded at once (the rest are answered 503 with ``Retry-After`` at once,
never queued), each within the decode limits of :mod:`chatspan.query_api.otlp`, and a
request's spans are stored in slices as they are decoded rather than all held first.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from sqlalchemy import exc

from chatspan.config import ApiSettings
from chatspan.query_api.auth import key_matches
from chatspan.query_api.otlp import (
    DecodedRequest,
    DecodeLimits,
    OtlpDecodeError,
    decode_json,
    decode_protobuf,
)
from chatspan.query_api.state import ServiceState, State
from chatspan.records import SpanData
from chatspan.store.engine import describe_error
from chatspan.store.writer import WriteResult

_logger = logging.getLogger(__name__)

router = APIRouter(tags=["ingest"])

PROTOBUF, JSON = "application/x-protobuf", "application/json"
_GRPC_UNAVAILABLE, _GRPC_INVALID, _GRPC_UNAUTHENTICATED = 14, 3, 16
# Decoded attribute values stored per slice of a request: a few MiB of objects.
SLICE_VALUES = 65_536


class _Refusal(Exception):
    def __init__(
        self, status_code: int, grpc_code: int, message: str, retry_after: int = 5
    ) -> None:
        super().__init__(message)
        self.status_code, self.grpc_code, self.message = status_code, grpc_code, message
        self.retry_after = retry_after


@router.post(
    "/v1/traces",
    summary="OTLP/HTTP trace ingest",
    response_class=Response,
    responses={
        200: {"description": "an ExportTraceServiceResponse, in the request's media type"},
        400: {"description": "not an OTLP trace request"},
        401: {"description": "no valid ingest key"},
        413: {"description": "the body is too large, compressed or not"},
        415: {"description": "neither application/x-protobuf nor application/json"},
        503: {
            "description": "the database is unavailable, or other requests are being "
            "decoded; retry after Retry-After seconds"
        },
    },
)
async def ingest_traces(request: Request, state: State) -> Response:
    media_type = _media_type(request)
    try:
        _authenticate(request, state)
        if media_type not in (PROTOBUF, JSON):
            raise _Refusal(415, _GRPC_INVALID, "send application/x-protobuf or application/json")
        body, gzipped = await _read_body(request, state.settings)
        slots = state.decode_slots
        if not slots.acquire(blocking=False):
            raise _Refusal(503, _GRPC_UNAVAILABLE, "busy decoding other requests; retry later", 1)
        try:
            decoded, result = await run_in_threadpool(
                _decode_and_store, state, body, gzipped, media_type
            )
        finally:
            slots.release()
    except _Refusal as refusal:
        return _status_response(refusal, media_type)
    rejected = decoded.rejected + result.skipped_spans + result.rejected_rows
    reason = decoded.reason or ("some spans or rows could not be stored" if rejected else "")
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=reason)
        )
    return _message_response(response, media_type, status.HTTP_200_OK)


def _decode_limits(settings: ApiSettings) -> DecodeLimits:
    return DecodeLimits(
        spans=settings.ingest_max_spans,
        attributes=settings.ingest_max_attributes,
        events=settings.ingest_max_events,
    )


def _decode_and_store(
    state: ServiceState, body: bytes, gzipped: bool, media_type: str
) -> tuple[DecodedRequest, WriteResult]:
    """Off the event loop: a large batch takes milliseconds to inflate and decode."""
    settings = state.settings
    if gzipped:
        body = _gunzip(body, settings.ingest_max_decompressed_bytes)
    decode = decode_protobuf if media_type == PROTOBUF else decode_json
    try:
        decoded = decode(body, _decode_limits(settings))
    except OtlpDecodeError as error:
        raise _Refusal(400, _GRPC_INVALID, str(error)) from None
    del body  # JSON is parsed; protobuf spans are read from it as they are stored
    results = [_store(state, spans) for spans in _slices(decoded)]
    return decoded, WriteResult(
        chats=sum(r.chats for r in results),
        errors=sum(r.errors for r in results),
        skipped_spans=sum(r.skipped_spans for r in results),
        rejected_rows=sum(r.rejected_rows for r in results),
    )


def _slices(decoded: DecodedRequest) -> Iterator[list[SpanData]]:
    """The request's spans, a slice at a time: stored and let go before the next is
    decoded. (Errors still find their chats across slices: the writer joins them.)"""
    spans: list[SpanData] = []
    mark, sliced = 0, False
    for span in decoded.spans:
        spans.append(span)
        if decoded.values - mark >= SLICE_VALUES:
            yield spans
            spans, mark, sliced = [], decoded.values, True
    if spans or not sliced:
        yield spans


def _store(state: ServiceState, spans: list[SpanData]) -> WriteResult:
    try:
        state.schema.ensure()
        return state.writer.write(spans)
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
        _logger.warning("chatspan: ingest: database unavailable: %s", describe_error(error))
        raise _Refusal(503, _GRPC_UNAVAILABLE, "the database is unavailable; retry later") from None


def _authenticate(request: Request, state: ServiceState) -> None:
    if state.insecure:
        return
    keys = state.settings.ingest_api_keys
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not keys:
        raise _Refusal(401, _GRPC_UNAUTHENTICATED, "ingest is off: set CHATSPAN_INGEST_API_KEYS")
    if scheme.lower() != "bearer" or not key_matches(token.strip(), keys):
        raise _Refusal(401, _GRPC_UNAUTHENTICATED, "an ingest key is required (Bearer)")


async def _read_body(request: Request, settings: ApiSettings) -> tuple[bytes, bool]:
    """The body as sent, within the size limit, and whether it is gzipped."""
    limit = settings.ingest_max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _Refusal(413, _GRPC_INVALID, f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, _GRPC_INVALID, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise _Refusal(415, _GRPC_INVALID, f"content-encoding {encoding!r}: use gzip or none")
    return body, encoding == "gzip"


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress, stopping as soon as the output passes `limit` (a zip bomb costs no more)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise _Refusal(400, _GRPC_INVALID, f"the body is not valid gzip: {error}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _Refusal(413, _GRPC_INVALID, f"the body inflates to more than {limit} bytes")
    if not inflater.eof:
        raise _Refusal(400, _GRPC_INVALID, "the gzip body is truncated")
    return out


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _status_response(refusal: _Refusal, media_type: str) -> Response:
    message = status_pb2.Status(code=refusal.grpc_code, message=refusal.message)
    response = _message_response(message, media_type, refusal.status_code)
    if refusal.status_code == 503:
        response.headers["Retry-After"] = str(refusal.retry_after)
    if refusal.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _message_response(message: Any, media_type: str, status_code: int) -> Response:
    if media_type == PROTOBUF:
        return Response(message.SerializeToString(), status_code, media_type=PROTOBUF)
    body = json_format.MessageToJson(message, indent=None)
    return Response(body, status_code, media_type=JSON)
