"""``chatspan demo``: sample chats and errors recorded through the real exporter."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import func, select

import chatspan
from chatspan.config import StoreSettings
from chatspan.exporters.postgres import PostgresSpanExporter
from chatspan.store.engine import make_engine, safe_url
from chatspan.store.tables import dify_logs, error

_CHATS = [
    (
        "support-bot",
        "conv-alice-1",
        "alice",
        "How do I reset my password?",
        "Open Settings, choose Security, then Reset password.",
        812.0,
    ),
    (
        "support-bot",
        "conv-alice-1",
        "alice",
        "And if I lost my phone?",
        "Use one of your recovery codes instead of the phone.",
        640.5,
    ),
    (
        "sales-bot",
        "conv-bob-1",
        "bob",
        "What does the team plan cost?",
        "The team plan is 20 EUR per seat per month.",
        1204.0,
    ),
]


def run_demo(settings: StoreSettings) -> int:
    provider = TracerProvider(resource=Resource.create({"service.name": "chatspan-demo"}))
    provider.add_span_processor(BatchSpanProcessor(PostgresSpanExporter(settings)))
    trace.set_tracer_provider(provider)

    for app_id, conversation_id, user_id, question, answer, latency_ms in _CHATS:
        chatspan.log_chat(
            app_id,
            conversation_id,
            user_id,
            question,
            answer,
            latency_ms,
            model="gpt-4o-mini",
            provider="openai",
            input_tokens=12,
            output_tokens=18,
        )
    try:
        raise TimeoutError("model provider did not answer within 30 s")
    except TimeoutError as exc:
        chatspan.log_error(
            "TimeoutError", str(exc), user_id="bob", node="llm", exc=exc, app_id="sales-bot"
        )
    chatspan.log_error(
        "KnowledgeRetrievalError",
        "index 'faq' not found",
        user_id="alice",
        node="knowledge_retrieval",
    )
    provider.shutdown()

    engine = make_engine(settings.database_url, timeout_s=settings.export_timeout_s)
    with engine.connect() as connection:
        chats = connection.execute(
            select(
                dify_logs.c.created_at,
                dify_logs.c.user_id,
                dify_logs.c.input_text,
                dify_logs.c.output_text,
                dify_logs.c.latency_ms,
            )
            .order_by(dify_logs.c.created_at.desc())
            .limit(5)
        ).all()
        errors = connection.execute(
            select(error.c.created_at, error.c.user_id, error.c.type_error, error.c.error_message)
            .order_by(error.c.created_at.desc())
            .limit(5)
        ).all()
        totals = [
            connection.scalar(select(func.count()).select_from(t)) for t in (dify_logs, error)
        ]
    print(f"\nchatspan demo: rows in {safe_url(engine.url)}")
    print(f"dify_logs: {totals[0]} rows; newest:")
    for row in chats:
        print(
            f"  {row.created_at:%H:%M:%S} {row.user_id:<6} {row.latency_ms:7.1f} ms  "
            f"{row.input_text!r} -> {row.output_text!r}"
        )
    print(f"error: {totals[1]} rows; newest:")
    for row in errors:
        print(
            f"  {row.created_at:%H:%M:%S} {row.user_id or '-':<6} {row.type_error}: "
            f"{row.error_message}"
        )
    return 0
