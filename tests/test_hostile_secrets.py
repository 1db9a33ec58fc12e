"""Secrets and personal data an attacker (or a careless app) puts in error messages, stack
traces and attributes never reach a span chatspan makes or a row it stores, whichever
road the span took: the instrumentation, the manual API, OTLP ingest."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from flask import Flask
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Status, StatusCode

import chatspan
from chatspan import cli, manual
from chatspan import semconv as sc
from chatspan.config import (
    ApiSettings,
    ConfigError,
    SpoolSettings,
    StoreSettings,
    SupabaseSettings,
)
from chatspan.exporters.postgres import PostgresSpanExporter
from chatspan.instrumentation import ChatInstrumentor
from chatspan.query_api import create_app
from chatspan.query_api.state import state_of
from chatspan.records import SpanData
from chatspan.store.engine import make_engine, resolve_url, safe_url
from chatspan.store.writer import RecordWriter

from rows import fetch_rows
from servers import clean_env
from spans import SpanRecorder

APP_KEY = "app-SECRETkey0123456789abcdef"
EMAIL = "alice@example.com"
OPENAI_KEY = "sk-proj-SECRETabcdefghijklmnop"
SECRETS = (APP_KEY, EMAIL, OPENAI_KEY)
MESSAGE = f"upstream refused Bearer {APP_KEY} for {EMAIL} with key {OPENAI_KEY}"
INGEST_KEY = "ingest-key-for-secrets-0123456789"


def _leaks(value: Any) -> list[str]:
    """The secrets found anywhere in `value` (spans, rows, dicts, lists)."""
    text = json.dumps(value, default=str)
    return [secret for secret in SECRETS if secret in text]


def _span_texts(spans: list[ReadableSpan]) -> list[Any]:
    """Everything a span exporter would send of each span."""
    return [
        {
            "name": span.name,
            "status": span.status.description,
            "attributes": dict(span.attributes or {}),
            "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        }
        for span in spans
    ]


def _store(url: str, spans: list[ReadableSpan]) -> None:
    engine = make_engine(url, timeout_s=10)
    RecordWriter(engine).write([SpanData.from_sdk(span) for span in spans])
    engine.dispose()


def _failing_app() -> Flask:
    """A chat route and another route, both raising an exception that quotes secrets."""
    app = Flask("leaky")

    @app.post("/v1/chat-messages")
    def chat():
        raise RuntimeError(MESSAGE)

    @app.get("/v1/parameters")
    def parameters():
        raise RuntimeError(MESSAGE)

    return app


def _call_both_routes(app: Flask) -> None:
    client = app.test_client()
    chat = client.post(
        "/v1/chat-messages",
        json={"query": "hi", "user": "u-1", "response_mode": "blocking", "inputs": {}},
        headers={"Authorization": f"Bearer {APP_KEY}"},
        buffered=True,  # read to the end, as a server does: the chat span ends
    )
    other = client.get("/v1/parameters")
    assert chat.status_code == other.status_code == 500


def test_exceptions_of_chat_and_other_routes_leave_no_secret_on_spans_or_rows(database_url):
    recorder = SpanRecorder()
    app = _failing_app()
    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    _call_both_routes(app)
    spans = recorder.spans()
    events = [e for s in spans for e in s.events if e.name == sc.EXCEPTION_EVENT]
    assert len(events) == 2  # one on the chat span, one on the other route's span
    assert all(e.attributes[sc.EXCEPTION_STACKTRACE] for e in events)  # still a stack trace
    assert _leaks(_span_texts(spans)) == []

    _store(database_url, spans)
    errors = fetch_rows(database_url, "error")
    assert sorted(e["route"] for e in errors) == ["/v1/chat-messages", "/v1/parameters"]
    for row in errors:
        assert "[REDACTED_EMAIL]" in row["error_message"]
        assert "Traceback (most recent call last)" in row["stacktrace"]
        assert "[REDACTED_EMAIL]" in row["stacktrace"]  # the stack trace's last line
    assert _leaks(errors) == []


def test_with_the_server_instrumentation_too_one_clean_row_per_exception(database_url):
    """OpenTelemetry's Flask instrumentation records the exception on the server span in
    clear, beside chatspan's redacted copy: the row is still one, and clean."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    recorder = SpanRecorder()
    app = _failing_app()
    FlaskInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    ChatInstrumentor().instrument_app(app, tracer_provider=recorder.provider)
    try:
        _call_both_routes(app)
    finally:
        FlaskInstrumentor().uninstrument_app(app)
    _store(database_url, recorder.spans())
    errors = fetch_rows(database_url, "error")
    assert sorted(e["route"] for e in errors) == ["/v1/chat-messages", "/v1/parameters"]
    assert _leaks(errors) == []


@pytest.fixture
def manual_spans(monkeypatch) -> SpanRecorder:
    """The manual API's spans, kept in memory."""
    recorder = SpanRecorder()
    monkeypatch.setattr(manual, "_tracer", recorder.provider.get_tracer("chatspan"))
    return recorder


def test_the_manual_api_redacts_before_the_span(database_url, manual_spans):
    try:
        raise ConnectionError(MESSAGE)
    except ConnectionError as error:
        chatspan.log_error("ConnectionError", str(error), user_id="u-2", exc=error, url=MESSAGE)
    chatspan.log_chat("app-1", "conv-1", "u-2", f"I am {EMAIL}", f"Your key {OPENAI_KEY}")
    assert _leaks(_span_texts(manual_spans.spans())) == []
    _store(database_url, manual_spans.spans())
    (row,) = fetch_rows(database_url, "error")
    assert "[REDACTED_EMAIL]" in row["error_message"] and "[REDACTED_KEY]" in row["stacktrace"]
    assert _leaks([row, fetch_rows(database_url, "dify_logs")]) == []


def _foreign_spans() -> list[ReadableSpan]:
    """Spans another app's instrumentation made, with no redaction of its own."""
    recorder = SpanRecorder()
    tracer = recorder.provider.get_tracer("another-app")
    attributes = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.USER_ID: "u-3",
        sc.INPUT_VALUE: f"My email is {EMAIL}",
        sc.OUTPUT_VALUE: f"Use {OPENAI_KEY}",
        "llm.input_messages.0.message.content": f"Bearer {APP_KEY}",
        "dify.workflow_run_id": "550e8400-e29b-41d4-a716-446655440000",
        "message.number": "msg-1234567",
    }
    with tracer.start_as_current_span(
        "chat", attributes=attributes, record_exception=False
    ) as span:
        try:
            raise RuntimeError(MESSAGE)
        except RuntimeError as error:
            span.record_exception(error, attributes={"request.header": f"Bearer {APP_KEY}"})
            span.set_status(Status(StatusCode.ERROR, "failed"))
    return recorder.spans()


def test_spans_ingested_over_otlp_are_redacted_into_rows(database_url):
    settings = ApiSettings(database_url=database_url, ingest_api_keys=(INGEST_KEY,))
    app = create_app(settings)
    body = encode_spans(_foreign_spans()).SerializeToString()
    with TestClient(app, headers={"Authorization": f"Bearer {INGEST_KEY}"}) as client:
        response = client.post(
            "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
        )
    state_of(app).engine.dispose()
    assert response.status_code == 200, response.text
    (chat,) = fetch_rows(database_url, "dify_logs")
    (error,) = fetch_rows(database_url, "error")
    assert chat["input_text"] == "My email is [REDACTED_EMAIL]"
    assert "[REDACTED_EMAIL]" in error["stacktrace"]
    assert _leaks([chat, error]) == []
    # Identifiers among the attributes are left whole.
    assert chat["attributes"]["dify.workflow_run_id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert chat["attributes"]["message.number"] == "msg-1234567"


# -- who may read: user tokens --------------------------------------------------------

JWT_SECRET = "a-jwt-secret-for-these-tests-0123456789"
# The SECRET_KEY sample of Dify's docker/.env.example, published with Dify: a token
# signed with it proves nothing.
DIFY_SAMPLE_SECRET = "sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U"


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("x", "at least 32 bytes"),
        ("short-but-not-one-char", "at least 32 bytes"),
        (DIFY_SAMPLE_SECRET, "sample SECRET_KEY of Dify's docker/.env.example"),
    ],
    ids=["one-character", "22-characters", "dify-sample"],
)
def test_a_weak_jwt_secret_stops_the_service_at_start(
    tmp_path, monkeypatch, capsys, secret, reason
):
    def serving(*_args, **_kwargs):
        raise AssertionError("chatspan serve started with a weak CHATSPAN_JWT_SECRET")

    monkeypatch.setattr(cli, "_run_api", serving)
    monkeypatch.setenv("CHATSPAN_DATABASE_URL", f"sqlite:///{tmp_path}/c.db")
    monkeypatch.setenv("CHATSPAN_ADMIN_API_KEYS", "an-admin-key-long-enough-0123")
    monkeypatch.setenv("CHATSPAN_JWT_SECRET", secret)
    assert cli.main(["serve"]) == 2
    error = capsys.readouterr().err
    assert "CHATSPAN_JWT_SECRET" in error and reason in error
    assert secret not in error
    with pytest.raises(ConfigError, match="CHATSPAN_JWT_SECRET"):
        ApiSettings(jwt_secret=secret)  # whichever way the settings are made


@pytest.fixture
def user_api(database_url):
    """The query service with user tokens on; `reader(token, user)` is the status code of
    that user's history read with that token."""
    made = []

    def reader(token: str, user: str, **settings: Any) -> int:
        app = create_app(ApiSettings(database_url=database_url, jwt_secret=JWT_SECRET, **settings))
        made.append(app)
        with TestClient(app) as client:
            return client.get(
                f"/console/api/admin/users/{user}/chat-history",
                headers={"Authorization": f"Bearer {token}"},
            ).status_code

    yield reader
    for app in made:
        state_of(app).engine.dispose()


def _jwt(claims: dict[str, Any]) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, JWT_SECRET, algorithm="HS256")


def test_a_dify_web_app_passport_is_no_user_token(user_api):
    passport = _jwt(
        {
            "iss": "app-uuid",
            "sub": "Web API Passport",
            "app_id": "a-1",
            "app_code": "xyz",
            "end_user_id": "eu-1",
        }
    )
    assert user_api(passport, "Web API Passport") == 401
    assert user_api(passport, "eu-1") == 401
    assert user_api(passport, "eu-1", jwt_user_claim="end_user_id") == 401
    # A console token without the account id is no user token either.
    assert user_api(_jwt({"sub": "Console API Passport"}), "Console API Passport") == 401
    # The user is the claim that names them.
    assert user_api(_jwt({"user_id": "u-1", "sub": "Console API Passport"}), "u-1") == 200
    assert user_api(_jwt({"sub": "u-2"}), "u-2") == 200


def test_audience_and_issuer_are_checked_when_set(user_api):
    checked = {"jwt_audience": "chatspan", "jwt_issuer": "https://auth.example"}
    good = {"sub": "u-1", "aud": "chatspan", "iss": "https://auth.example"}
    assert user_api(_jwt(good), "u-1", **checked) == 200
    assert user_api(_jwt({**good, "aud": "another-service"}), "u-1", **checked) == 401
    assert user_api(_jwt({**good, "iss": "https://evil.example"}), "u-1", **checked) == 401
    assert user_api(_jwt({"sub": "u-1"}), "u-1", **checked) == 401  # neither claim
    settings = ApiSettings.from_env(
        {
            "CHATSPAN_JWT_SECRET": JWT_SECRET,
            "CHATSPAN_JWT_AUDIENCE": "chatspan",
            "CHATSPAN_JWT_ISSUER": "https://auth.example",
        }
    )
    assert (settings.jwt_audience, settings.jwt_issuer) == ("chatspan", "https://auth.example")


# -- passwords and keys in settings -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db.example:5432/chat?password=hunter2-pw",
        "postgresql://app:hunter2-pw@db.example/chat?sslpassword=hunter2-pw&sslmode=require",
        "app:hunter2-pw@db.example/chat",  # no scheme: not a URL, still a password
    ],
)
def test_a_database_password_is_masked_wherever_the_url_is_shown(url):
    assert "hunter2" not in safe_url(url)


def test_a_url_without_a_scheme_is_refused_without_echoing_it():
    with pytest.raises(ConfigError, match="CHATSPAN_DATABASE_URL") as refused:
        resolve_url("app:hunter2-pw@db.example/chat")
    assert "hunter2" not in str(refused.value)


def test_db_upgrade_and_the_exporter_hide_libpq_password_parameters(empty_postgres_database):
    url = f"{empty_postgres_database}?password=hunter2-pw"  # trust auth lets any password in
    result = subprocess.run(
        [str(Path(sys.executable).parent / "chatspan"), "db", "upgrade"],
        env=clean_env(CHATSPAN_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "schema revision" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    exporter = PostgresSpanExporter(StoreSettings(database_url=url), SpoolSettings(enabled=False))
    assert "hunter2" not in exporter.destination  # what its log lines name
    exporter.shutdown()


def test_supabase_over_plain_http_is_refused_unless_on_this_machine():
    key = "sb_secret_" + "K" * 32  # a placeholder in the new key format
    for local in ("http://127.0.0.1:54321", "http://localhost:54321", "http://[::1]:54321"):
        settings = {"SUPABASE_URL": local, "SUPABASE_SERVICE_ROLE_KEY": key}
        assert SupabaseSettings.from_env(settings).url == local
    with pytest.raises(ConfigError, match="SUPABASE_URL must use https://") as refused:
        SupabaseSettings.from_env(
            {"SUPABASE_URL": "http://abcdefgh.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": key}
        )
    assert key not in str(refused.value)
