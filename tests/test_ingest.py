"""POST /v1/traces: OTLP/HTTP protobuf and JSON into the same tables as the exporter,
with limits, partial success and clear refusals (PostgreSQL and SQLite)."""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from chatspan import semconv as sc
from chatspan.config import ApiSettings, StoreSettings
from chatspan.exporters.postgres import PostgresSpanExporter
from chatspan.query_api import create_app
from chatspan.query_api.state import state_of

from rows import comparable_rows, count_rows, fetch_rows
from spans import chat_spans

INGEST_KEY = "ingest-key-for-tests-0123456789"
ADMIN_KEY = "admin-key-for-tests-0123456789"
PROTOBUF = "application/x-protobuf"


@pytest.fixture
def ingest(database_url):
    settings = ApiSettings(
        database_url=database_url,
        admin_api_keys=(ADMIN_KEY,),
        ingest_api_keys=(INGEST_KEY,),
        ingest_max_bytes=2 * 1024 * 1024,
        ingest_max_decompressed_bytes=16 * 1024 * 1024,
    )
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {INGEST_KEY}"}) as client:
        yield client, database_url
    state_of(app).engine.dispose()


def _protobuf(spans) -> bytes:
    return encode_spans(spans).SerializeToString()


def _otlp_json(spans) -> bytes:
    """OTLP/JSON as the specification writes it: ids in hex, not base64."""
    document = json_format.MessageToDict(encode_spans(spans))
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


@pytest.mark.parametrize("encoding", ["protobuf", "protobuf+gzip", "json", "json+gzip"])
def test_forwarded_spans_give_the_rows_a_direct_export_gives(ingest, tmp_path, encoding):
    client, url = ingest
    spans = chat_spans(60, exception_every=4)
    direct_url = f"sqlite:///{tmp_path / 'direct.db'}"
    exporter = PostgresSpanExporter(StoreSettings(database_url=direct_url))
    exporter.export(spans)
    exporter.shutdown()

    media = PROTOBUF if encoding.startswith("protobuf") else "application/json"
    body = _protobuf(spans) if media == PROTOBUF else _otlp_json(spans)
    headers = {"Content-Type": media}
    if encoding.endswith("gzip"):
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    response = client.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media)
    if media == PROTOBUF:
        answer = ExportTraceServiceResponse.FromString(response.content)
        assert not answer.HasField("partial_success")
    else:
        assert response.json() == {}
    for table in ("dify_logs", "error"):
        assert comparable_rows(url, table) == comparable_rows(direct_url, table)
    assert count_rows(url, "dify_logs") == 60
    assert count_rows(url, "error") == 15


def test_a_retried_batch_stores_nothing_twice(ingest):
    client, url = ingest
    body = _protobuf(chat_spans(10, exception_every=2))
    for _ in range(3):
        assert (
            client.post("/v1/traces", content=body, headers={"Content-Type": PROTOBUF}).status_code
            == 200
        )
    assert (count_rows(url, "dify_logs"), count_rows(url, "error")) == (10, 5)


def test_bad_spans_are_a_partial_success_and_the_rest_is_stored(ingest):
    client, url = ingest
    document = json.loads(_otlp_json(chat_spans(5)))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1]["traceId"] = "not-hex"
    spans[3]["spanId"] = "00" * 8
    spans.append("not even an object")
    response = client.post("/v1/traces", json=document)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "3"
    assert "traceId" in partial["errorMessage"]
    assert count_rows(url, "dify_logs") == 3


def _raw_request(*spans: tuple[str, dict]) -> bytes:
    """A request built field by field: the SDK itself would cap these spans."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for name, attributes in spans:
        span = scope.spans.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name=name,
            start_time_unix_nano=1_700_000_000_000_000_000,
            end_time_unix_nano=1_700_000_001_000_000_000,
        )
        for key, value in attributes.items():
            kv = span.attributes.add(key=key)
            if isinstance(value, str):
                kv.value.string_value = value
            else:
                kv.value.int_value = value
    return request.SerializeToString()


def test_huge_spans_are_stored_within_the_caps(ingest):
    client, url = ingest
    wide = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.USER_ID: "wide",
        **{f"extra.{i}": i for i in range(10_000)},
    }
    tall = {sc.GEN_AI_OPERATION_NAME: "chat", sc.USER_ID: "tall", sc.INPUT_VALUE: "x" * 10_000_000}
    body = gzip.compress(_raw_request(("wide", wide), ("tall", tall)))
    response = client.post(
        "/v1/traces", content=body, headers={"Content-Type": PROTOBUF, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    rows = {r["user_id"]: r for r in fetch_rows(url, "dify_logs")}
    # Decoding keeps a span's first 128 attributes (two of them columns) and counts the rest.
    kept = ApiSettings().ingest_max_attributes
    extra = rows["wide"]["attributes"]
    assert extra["chatspan.attributes_dropped"] == len(wide) - kept
    assert len(extra) == kept - 2 + 1  # the kept extras, and the count
    assert len(rows["tall"]["input_text"]) == 1_000_000


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({"Content-Type": "text/plain"}, b"hello", 415, "application/x-protobuf"),
        ({"Content-Type": PROTOBUF, "Content-Encoding": "br"}, b"x", 415, "content-encoding"),
        ({"Content-Type": PROTOBUF}, b"\x0a\xff\xff\xff\x0f", 400, "not an OTLP"),
        ({"Content-Type": PROTOBUF}, os.urandom(4096), 400, "not an OTLP"),
        (
            {"Content-Type": "application/json"},
            b'{"resourceSpans": {"x": 1}}',
            400,
            "must be a list",
        ),
        ({"Content-Type": "application/json"}, b"[1, 2]", 400, "object"),
        ({"Content-Type": "application/json"}, b'{"resourceSpans": [\xff]}', 400, "UTF-8"),
        ({"Content-Type": "application/json"}, b"{not json", 400, "not JSON"),
        ({"Content-Type": PROTOBUF, "Content-Encoding": "gzip"}, b"not gzip", 400, "gzip"),
        (
            {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"},
            gzip.compress(b"abc")[:-6],
            400,
            "truncated",
        ),
        ({"Content-Type": PROTOBUF}, b"\x00" * (3 * 1024 * 1024), 413, "larger than"),
        (
            {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"},
            gzip.compress(b"\x00" * (64 * 1024 * 1024)),
            413,
            "inflates",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_reason(ingest, headers, body, status, reason):
    client, url = ingest
    response = client.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == status, response.text
    if response.headers["content-type"].startswith(PROTOBUF):
        message = status_pb2.Status.FromString(response.content).message
    else:
        message = response.json()["message"]
    assert reason in message
    assert fetch_rows(url, "dify_logs") == []


def test_random_protobuf_never_causes_a_server_error(ingest):
    client, url = ingest
    valid = _protobuf(chat_spans(3, exception_every=1))
    generator = __import__("random").Random(7)
    # The control: the unmangled request is read and stored.
    assert client.post("/v1/traces", content=valid, headers={"Content-Type": PROTOBUF}).is_success
    assert count_rows(url, "dify_logs") == 3
    statuses = Counter()
    for _ in range(300):
        body = bytearray(valid)
        for _ in range(generator.randint(1, 8)):
            body[generator.randrange(len(body))] = generator.randrange(256)
        if generator.random() < 0.5:  # half of them cut short too
            body = body[: generator.randrange(1, len(body) + 1)]
        response = client.post(
            "/v1/traces", content=bytes(body), headers={"Content-Type": PROTOBUF}
        )
        assert response.status_code in (200, 400), response.text
        statuses[response.status_code] += 1
    # Both roads were taken: mangled bodies were decoded and mapped, not all refused early.
    assert statuses[200] > 10 and statuses[400] > 10, statuses


@pytest.mark.parametrize("credential", [None, "wrong-key-0123456789abcdef", ADMIN_KEY])
def test_only_ingest_keys_may_send(ingest, credential):
    client, url = ingest
    headers = {
        "Content-Type": PROTOBUF,
        "Authorization": f"Bearer {credential}" if credential else "",
    }
    response = client.post("/v1/traces", content=_protobuf(chat_spans(1)), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert fetch_rows(url, "dify_logs") == [] and fetch_rows(url, "error") == []


def test_an_unavailable_database_is_503_with_retry_after():
    settings = ApiSettings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        ingest_api_keys=(INGEST_KEY,),
        query_timeout_s=2,
    )
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {INGEST_KEY}"}) as client:
        response = client.post(
            "/v1/traces", content=_protobuf(chat_spans(2)), headers={"Content-Type": PROTOBUF}
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
