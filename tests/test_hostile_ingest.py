"""Hostile OTLP ingest: forged nesting and timestamps are 4xx with a reason, never 500;
decoding keeps a request within its caps (spans, attributes, events) and counts what it
drops; requests past the concurrent-decode cap are told to retry; and the memory a
request costs is bounded by its size, measured in a process of its own."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from chatspan import semconv as sc
from chatspan.config import ApiSettings, ConfigError
from chatspan.query_api import create_app, otlp
from chatspan.query_api.state import state_of

from pgdb import libpq_dsn
from rows import fetch_rows
from servers import wait_for

INGEST_KEY = "hostile-ingest-key-0123456789"
PROTOBUF = "application/x-protobuf"
TRACE_ID = "5b8efff798038103d269b633813fc60c"


def _client(database_url: str, **settings) -> TestClient:
    app = create_app(
        ApiSettings(database_url=database_url, ingest_api_keys=(INGEST_KEY,), **settings)
    )
    return TestClient(app, headers={"Authorization": f"Bearer {INGEST_KEY}"})


@pytest.fixture
def ingest(database_url):
    with _client(database_url) as client:
        yield client, database_url
    state_of(client.app).engine.dispose()


def _json_span(span_id: str, start: str = '"1700000000000000000"', **extra: str) -> str:
    """A chat span as OTLP/JSON text, so that non-standard numbers can be written."""
    fields = {
        "traceId": f'"{TRACE_ID}"',
        "spanId": f'"{span_id}"',
        "name": '"chat"',
        "startTimeUnixNano": start,
        "endTimeUnixNano": '"1700000001000000000"',
        "attributes": '[{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]',
        **extra,
    }
    return "{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}"


def _json_request(*spans: str) -> str:
    return '{"resourceSpans": [{"scopeSpans": [{"spans": [' + ", ".join(spans) + "]}]}]}"


def _post_json(client: TestClient, body: str | bytes):
    return client.post("/v1/traces", content=body, headers={"Content-Type": "application/json"})


def _nested_value(levels: int) -> str:
    return '{"arrayValue": {"values": [' * levels + '{"intValue": "1"}' + "]}}" * levels


DEEP = {
    "arrays": "[" * 100_000 + "]" * 100_000,
    "objects": '{"a": ' * 5_000 + "1" + "}" * 5_000,
    "an attribute value": _json_request(
        _json_span(
            "eee19b7ec3c1b174",
            attributes=f'[{{"key": "deep", "value": {_nested_value(2_000)}}}]',
        )
    ),
}


@pytest.mark.parametrize("shape", list(DEEP))
def test_json_nested_past_any_otlp_request_is_400_with_a_reason(ingest, shape):
    client, url = ingest
    response = _post_json(client, DEEP[shape])
    assert response.status_code == 400, response.text
    assert "nests more than 64 levels" in response.json()["message"]
    assert fetch_rows(url, "dify_logs") == []


def test_json_nested_as_deep_as_a_value_may_be_is_read(ingest):
    client, url = ingest
    deep_but_fine = (
        '[{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},'
        f' {{"key": "nested", "value": {_nested_value(10)}}}]'
    )
    response = _post_json(
        client, _json_request(_json_span("eee19b7ec3c1b174", attributes=deep_but_fine))
    )
    assert response.status_code == 200, response.text
    (row,) = fetch_rows(url, "dify_logs")
    cut = row["attributes"]["nested"]
    for _level in range(7):  # MAX_VALUE_DEPTH levels are kept, the rest is cut
        (cut,) = cut
    assert cut == [None]


FORGED_TIMES = ["Infinity", "-Infinity", "NaN", "1e400", "1.5", '"1e18"', str(2**64), "-1"]


@pytest.mark.parametrize("field", ["startTimeUnixNano", "endTimeUnixNano", "event"])
@pytest.mark.parametrize("forged", FORGED_TIMES)
def test_a_forged_timestamp_rejects_its_span_not_the_request(ingest, field, forged):
    client, url = ingest
    if field == "event":
        bad = _json_span(
            "0000000000000bad",
            events=f'[{{"name": "exception", "timeUnixNano": {forged}}}]',
        )
    else:
        bad = _json_span("0000000000000bad", **{field: forged})
    response = _post_json(client, _json_request(_json_span("eee19b7ec3c1b174"), bad))
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "timestamps must" in partial["errorMessage"]
    (row,) = fetch_rows(url, "dify_logs")  # the other span is stored
    assert row["span_id"] == "eee19b7ec3c1b174"


def test_non_finite_attribute_values_are_stored_as_no_value_not_a_500(ingest):
    client, url = ingest
    attributes = (
        '[{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},'
        ' {"key": "a", "value": {"intValue": Infinity}},'
        ' {"key": "b", "value": {"doubleValue": NaN}},'
        ' {"key": "c", "value": {"intValue": "1e999"}}]'
    )
    response = _post_json(
        client, _json_request(_json_span("eee19b7ec3c1b174", attributes=attributes))
    )
    assert response.status_code == 200, response.text
    (row,) = fetch_rows(url, "dify_logs")
    assert row["attributes"]["a"] is None and row["attributes"]["c"] is None


# -- decode caps -----------------------------------------------------------------------


def _protobuf_request(spans: int, attributes: int, events: int, event_attributes: int) -> bytes:
    """Spans built field by field: the SDK would cap these itself."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index in range(spans):
        span = scope.spans.add(
            trace_id=bytes.fromhex(TRACE_ID),
            span_id=(index + 1).to_bytes(8, "big"),
            name="chat",
            start_time_unix_nano=1_700_000_000_000_000_000,
            end_time_unix_nano=1_700_000_001_000_000_000,
        )
        for key, value in ((sc.GEN_AI_OPERATION_NAME, "chat"), (sc.USER_ID, f"user-{index}")):
            span.attributes.add(key=key).value.string_value = value
        for number in range(attributes):
            span.attributes.add(key=f"extra.{number}").value.int_value = number
        for number in range(events):
            event = span.events.add(name="exception", time_unix_nano=1_700_000_000_500_000_000)
            event.attributes.add(key=sc.EXCEPTION_TYPE).value.string_value = f"E{number}"
            for extra in range(event_attributes):
                event.attributes.add(key=f"detail.{extra}").value.int_value = extra
    return request.SerializeToString()


def _as_json(body: bytes) -> bytes:
    from google.protobuf import json_format

    document = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body))
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId"):
                    span[key] = __import__("base64").b64decode(span[key]).hex()
    return json.dumps(document).encode()


def _post(client: TestClient, body: bytes, encoding: str):
    if encoding == "json":
        return _post_json(client, _as_json(body))
    headers = {"Content-Type": PROTOBUF}
    if body[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = "gzip"
    return client.post("/v1/traces", content=body, headers=headers)


ENCODINGS = ["protobuf", "protobuf, wire reader", "json"]


@pytest.fixture
def encoding(request, monkeypatch) -> str:
    """Protobuf spans are read by protobuf's parser when small, by the wire reader when
    not: "protobuf, wire reader" sends every span down the second road."""
    if request.param == "protobuf, wire reader":
        monkeypatch.setattr(otlp, "SMALL_SPAN_BYTES", 0)
    return request.param


@pytest.mark.parametrize("encoding", ENCODINGS, indirect=True)
def test_attributes_past_the_cap_are_dropped_while_decoding_and_counted(database_url, encoding):
    body = _protobuf_request(spans=1, attributes=300, events=1, event_attributes=300)
    with _client(database_url, ingest_max_attributes=50) as client:
        response = _post(client, body, encoding)
    state_of(client.app).engine.dispose()
    assert response.status_code == 200, response.text
    (chat,) = fetch_rows(database_url, "dify_logs")
    assert chat["user_id"] == "user-0"  # the first attributes are kept
    assert chat["attributes"]["chatspan.attributes_dropped"] == 302 - 50
    assert len(chat["attributes"]) == 50 - 2 + 1  # kept extras, and the count
    (error,) = fetch_rows(database_url, "error")
    assert error["type_error"] == "E0"
    assert error["attributes"]["chatspan.attributes_dropped"] == 301 - 50


@pytest.mark.parametrize("encoding", ENCODINGS, indirect=True)
def test_a_span_of_200k_attributes_keeps_its_first_and_counts_the_rest(database_url, encoding):
    body = _protobuf_request(spans=1, attributes=200_000, events=0, event_attributes=0)
    with _client(database_url) as client:
        response = _post(client, gzip.compress(body) if encoding != "json" else body, encoding)
    state_of(client.app).engine.dispose()
    assert response.status_code == 200, response.text
    (chat,) = fetch_rows(database_url, "dify_logs")
    assert chat["user_id"] == "user-0"
    assert chat["attributes"]["chatspan.attributes_dropped"] == 200_002 - 128


@pytest.mark.parametrize("encoding", ENCODINGS, indirect=True)
def test_spans_past_the_cap_are_rejected_in_partial_success(database_url, encoding):
    body = _protobuf_request(spans=15, attributes=0, events=0, event_attributes=0)
    with _client(database_url, ingest_max_spans=10) as client:
        response = _post(client, body, encoding)
    state_of(client.app).engine.dispose()
    assert response.status_code == 200, response.text
    if encoding == "json":
        partial = response.json()["partialSuccess"]
        rejected, message = int(partial["rejectedSpans"]), partial["errorMessage"]
    else:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        partial = ExportTraceServiceResponse.FromString(response.content).partial_success
        rejected, message = partial.rejected_spans, partial.error_message
    assert rejected == 5
    assert "CHATSPAN_INGEST_MAX_SPANS" in message
    users = sorted(row["user_id"] for row in fetch_rows(database_url, "dify_logs"))
    assert users == sorted(f"user-{i}" for i in range(10))  # the first ten


@pytest.mark.parametrize("encoding", ENCODINGS, indirect=True)
def test_events_past_the_cap_are_dropped(database_url, encoding):
    body = _protobuf_request(spans=1, attributes=0, events=30, event_attributes=0)
    with _client(database_url, ingest_max_events=7) as client:
        response = _post(client, body, encoding)
    state_of(client.app).engine.dispose()
    assert response.status_code == 200, response.text
    errors = fetch_rows(database_url, "error")
    assert sorted(row["type_error"] for row in errors) == sorted(f"E{i}" for i in range(7))


@pytest.mark.parametrize(
    "name",
    [
        "CHATSPAN_INGEST_MAX_CONCURRENT",
        "CHATSPAN_INGEST_MAX_SPANS",
        "CHATSPAN_INGEST_MAX_ATTRIBUTES",
        "CHATSPAN_INGEST_MAX_EVENTS",
    ],
)
@pytest.mark.parametrize("value", ["0", "-3", "1.5", "many"])
def test_a_bad_ingest_limit_names_its_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        ApiSettings.from_env({name: value})


def test_ingest_limits_are_read_from_the_environment():
    settings = ApiSettings.from_env(
        {
            "CHATSPAN_INGEST_MAX_CONCURRENT": "2",
            "CHATSPAN_INGEST_MAX_SPANS": "100",
            "CHATSPAN_INGEST_MAX_ATTRIBUTES": "64",
            "CHATSPAN_INGEST_MAX_EVENTS": "8",
        }
    )
    assert (
        settings.ingest_max_concurrent,
        settings.ingest_max_spans,
        settings.ingest_max_attributes,
        settings.ingest_max_events,
    ) == (2, 100, 64, 8)


# -- concurrent decodes ---------------------------------------------------------------


def test_requests_past_the_concurrent_decode_cap_are_told_to_retry(postgres_database):
    """One request holds the only slot (its rows wait on a table lock); the next is
    answered at once with 503 and Retry-After, and the first still succeeds."""
    body = _protobuf_request(spans=3, attributes=0, events=0, event_attributes=0)
    dsn = libpq_dsn(postgres_database)
    with psycopg.connect(dsn, autocommit=True) as locker:
        locker.execute('TRUNCATE dify_logs, "error"')
    with _client(postgres_database, ingest_max_concurrent=1) as client:
        first: dict = {}
        with psycopg.connect(dsn) as locker:
            locker.execute("LOCK TABLE dify_logs IN ACCESS EXCLUSIVE MODE")
            holder = threading.Thread(
                target=lambda: first.update(response=_post(client, body, "protobuf"))
            )
            holder.start()
            wait_for(lambda: _waiting_on_a_lock(dsn), what="the first request to hold its slot")
            refused = _post(client, body, "json")
            busy = client.post(
                "/v1/traces", content=b"\x00" * 10, headers={"Content-Type": PROTOBUF}
            )
            locker.rollback()  # lets the first request store its rows
        holder.join(30)
        after = _post(client, body, "protobuf")
    state_of(client.app).engine.dispose()
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert "busy" in refused.json()["message"]
    assert busy.status_code == 503
    assert "busy" in status_pb2.Status.FromString(busy.content).message
    assert first["response"].status_code == 200, first["response"].text
    assert after.status_code == 200  # the slot was given back
    assert len(fetch_rows(postgres_database, "dify_logs")) == 3


def _waiting_on_a_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as connection:
        waiting = connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(waiting and waiting[0])


# -- memory ---------------------------------------------------------------------------

MEMORY_PROBE = Path(__file__).resolve().parent.parent / "bench" / "ingest_memory.py"


@pytest.mark.parametrize("shape", ["wide span", "wide span json"])
def test_a_request_costs_memory_in_proportion_to_its_size(tmp_path, shape):
    """The 1.5 M-attribute attack, scaled down to 200 k attributes, decoded in a process
    of its own: its peak RSS grows by at most 10x the inflated body."""
    result = subprocess.run(
        [sys.executable, str(MEMORY_PROBE), "--shape", shape, "--size", "200000", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "CHATSPAN_SPOOL": "false"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["status"] == 200
    assert measured["growth_bytes"] <= 10 * measured["inflated_bytes"], measured
