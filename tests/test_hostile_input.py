"""Hostile input: the admin API answers only 4xx (or harmless 200s) and changes no row;
OTLP ingest never answers 5xx to mangled JSON; oversized chat bodies and endless
streams through the instrumentation do not grow memory."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from flask import Flask, Response, request
from memory import peak_growth
from sqlalchemy import text

from chatspan.config import ApiSettings
from chatspan.instrumentation import ChatInstrumentor
from chatspan.query_api import create_app
from chatspan.query_api.state import state_of
from chatspan.store.engine import make_engine

from rows import rows_where
from seed import seed
from spans import SpanRecorder

ADMIN_KEY = "hostile-admin-key-0123456789"
INGEST_KEY = "hostile-ingest-key-0123456789"


@pytest.fixture
def api(database_url):
    seed(database_url)
    settings = ApiSettings(
        database_url=database_url, admin_api_keys=(ADMIN_KEY,), ingest_api_keys=(INGEST_KEY,)
    )
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client, database_url
    state_of(app).engine.dispose()


def _fingerprint(url: str) -> str:
    """A digest of every row of both tables."""
    engine = make_engine(url, timeout_s=10)
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for table in ("dify_logs", '"error"'):
            for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY id")):
                digest.update(repr(tuple(row)).encode())
    engine.dispose()
    return digest.hexdigest()


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


SQL_LIKE = [
    "' OR 1=1 --",
    "'; DROP TABLE dify_logs; --",
    "\\",
    "%",
    "_",
    "1) OR (1=1",
    "$$; DELETE FROM error; $$",
]
HOSTILE = [
    *({"user_id": value} for value in SQL_LIKE),
    *({"q": value} for value in SQL_LIKE),
    *({"app_id": value, "conversation_id": value} for value in SQL_LIKE),
    {"per_page": 10**20},
    {"per_page": -1},
    {"page": -5},
    {"page": 10**30},
    {"page": "NaN"},
    {"since": "9999-99-99"},
    {"since": "2026-13-01T00:00:00Z"},
    {"until": "-0001-01-01"},
    {"since": "2026-01-01T00:00:00+25:00"},
    {"cursor": _cursor(["9999-12-31T23:59:59+00:00", "00000000-0000-0000-0000-000000000000"])},
    {"cursor": _cursor(["2026-01-01T00:00:00", "'; DROP TABLE error; --"])},
    {"cursor": _cursor(["not a date", "x"])},
    {"cursor": _cursor({"created_at": 1})},
    {"cursor": _cursor([1, 2, 3])},
    {"cursor": "=" * 600},
    {"cursor": "\x00"},
    {"status": "ok' OR '1'='1"},
]


@pytest.mark.parametrize("params", HOSTILE)
def test_hostile_parameters_get_4xx_or_nothing_and_change_no_row(api, params):
    client, url = api
    before = _fingerprint(url)
    for path in (
        "/console/api/admin/chat-logs",
        "/console/api/admin/error-logs",
        "/console/api/admin/users/user-1/chat-history",
    ):
        response = client.get(path, params=params)
        # 422 with a reason, or an answer: never an error, never a lost credential or route.
        assert response.status_code in (200, 422), (path, params, response.text)
        if response.status_code == 200:
            for row in response.json()["data"]:  # whatever comes back matches literally
                for key in ("user_id", "app_id", "conversation_id"):
                    if key in params and "chat-history" not in path:
                        assert row[key] == params[key]
                if "q" in params and path.endswith("chat-logs"):
                    text_of_row = f"{row['input_text']} {row['output_text']}".lower()
                    assert params["q"].lower() in text_of_row
    stats = client.get(
        "/console/api/admin/log-stats",
        params={k: v for k, v in params.items() if k in ("since", "until")},
    )
    assert stats.status_code in (200, 422), stats.text
    assert _fingerprint(url) == before


def test_mangled_otlp_json_never_causes_a_server_error(api):
    client, url = api
    valid = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "x"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [
                                    {
                                        "key": "gen_ai.operation.name",
                                        "value": {"stringValue": "chat"},
                                    },
                                    {"key": "user.id", "value": {"intValue": "42"}},
                                ],
                                "events": [
                                    {
                                        "name": "exception",
                                        "timeUnixNano": "1700000000500000000",
                                        "attributes": [
                                            {"key": "exception.type", "value": {"stringValue": "E"}}
                                        ],
                                    }
                                ],
                                "status": {"code": 2},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    generator = random.Random(11)
    replacements = [
        None,
        [],
        {},
        "",
        "x",
        -1,
        10**40,
        1.5,
        True,
        {"stringValue": None},
        [None],
        "zz" * 20,
    ]

    def mangle(node: Any) -> Any:
        if isinstance(node, dict) and node and generator.random() < 0.3:
            key = generator.choice(list(node))
            node = {**node, key: generator.choice(replacements)}
        if isinstance(node, dict):
            return {k: mangle(v) for k, v in node.items()}
        if isinstance(node, list):
            return [mangle(v) for v in node]
        return node

    headers = {"Authorization": f"Bearer {INGEST_KEY}", "Content-Type": "application/json"}
    # The control: the unmangled request is read and stored, its exception too.
    assert client.post("/v1/traces", content=json.dumps(valid), headers=headers).is_success
    trace_id = "5b8efff798038103d269b633813fc60c"
    assert len(rows_where(url, "dify_logs", trace_id=trace_id)) == 1
    assert len(rows_where(url, "error", trace_id=trace_id)) == 1
    statuses = Counter()
    for _ in range(300):
        body = json.dumps(mangle(valid)).encode()
        response = client.post("/v1/traces", content=body, headers=headers)
        assert response.status_code in (200, 400), (response.status_code, response.text, body)
        statuses[response.status_code] += 1
    # Both roads were taken: mangled spans were decoded and mapped, not all refused early.
    assert statuses[200] > 10 and statuses[400] > 10, statuses


class _Zeros(io.RawIOBase):
    """A request body of `size` bytes that never exists in memory at once."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = b"\x00" * count
        self.left -= count
        return count


def test_oversized_bodies_and_endless_streams_keep_memory_bounded(monkeypatch):
    monkeypatch.setenv("CHATSPAN_MAX_REQUEST_BYTES", str(1024 * 1024))
    recorder = SpanRecorder()
    app = Flask("hostile")
    piece = b'data: {"event": "message", "answer": "' + b"endless " * 16 + b'"}\n\n'

    @app.post("/v1/chat-messages")
    def chat():
        received = 0
        while chunk := request.stream.read(65536):  # the app reads the big body itself
            received += len(chunk)

        def forever():
            yield b'data: {"event": "message", "answer": "start", "message_id": "m", "conversation_id": "c"}\n\n'
            for _ in range(200_000):  # about 30 MB of events
                yield piece

        return Response(
            forever(), mimetype="text/event-stream", headers={"X-Received": str(received)}
        )

    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    size = 50 * 1024 * 1024
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/chat-messages",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(size),
        "wsgi.input": io.BufferedReader(_Zeros(size)),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    headers = {}

    def start_response(status, response_headers, exc_info=None):
        headers.update(response_headers)

    sent = 0

    def count(chunk: bytes) -> None:
        nonlocal sent
        sent += len(chunk)

    body = app(environ, start_response)
    growth = peak_growth(body, 1_000, count)
    body.close()
    assert headers["X-Received"] == str(size)  # the app got the whole body, unread by chatspan
    assert sent > 30_000_000
    assert growth < 2 * 1024 * 1024, f"memory grew by {growth} bytes"
    (span,) = recorder.spans()
    assert span.attributes["chatspan.request.captured"] is False
    assert span.attributes["chatspan.output.truncated"] is True
