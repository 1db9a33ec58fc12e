"""A known dataset, written through the real mapping and writer, for the query tests.

Expected answers are computed here from the seed itself, in plain Python, so the
tests do not restate the queries they check.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from chatspan import semconv as sc
from chatspan.records import SpanData, SpanEvent, row_id
from chatspan.store.engine import make_engine
from chatspan.store.writer import RecordWriter

BASE = datetime(2026, 11, 1, tzinfo=timezone.utc)
USERS = [f"user-{i}" for i in range(5)]
_TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/app/{}", line 40, in run\n{}: x\n'
_STACKS = {
    "TimeoutError": _TRACEBACK.format("llm.py", "TimeoutError"),
    "ValueError": _TRACEBACK.format("parse.py", "ValueError"),
    "dify.node_failed": None,
}


@dataclass
class SeedChat:
    id: str
    created_at: datetime
    trace_id: str
    user_id: str
    app_id: str
    conversation_id: str
    status: str
    input_text: str
    output_text: str
    latency_ms: float
    input_tokens: int
    output_tokens: int


@dataclass
class SeedError:
    id: str
    created_at: datetime
    trace_id: str
    user_id: str | None
    app_id: str
    type_error: str
    node: str | None
    error_message: str


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _ids(kind: str, i: int) -> tuple[int, int]:
    digest = hashlib.sha256(f"{kind}-{i}".encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:24], "big") or 1


def chat_span(i: int, moment: datetime) -> tuple[SpanData, SeedChat]:
    trace, span = _ids("chat", i)
    status = "error" if i % 10 == 0 else "cancelled" if i % 10 == 5 else "ok"
    topic = "billing 100% refund" if i % 4 == 0 else "login"
    chat = SeedChat(
        id=str(uuid.UUID(row_id(f"{trace:032x}", f"{span:016x}"))),
        created_at=moment,
        trace_id=f"{trace:032x}",
        user_id=USERS[i % 5],
        app_id="app-a" if i % 3 else "app-b",
        conversation_id=f"conv-{i % 7}",
        status=status,
        input_text=f"Question {i} about {topic}",
        output_text=f"Answer {i}",
        latency_ms=100.0 + 10 * i,
        input_tokens=i,
        output_tokens=2 * i,
    )
    attributes = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.USER_ID: chat.user_id,
        sc.DIFY_APP_ID: chat.app_id,
        sc.GEN_AI_CONVERSATION_ID: chat.conversation_id,
        sc.INPUT_VALUE: chat.input_text,
        sc.OUTPUT_VALUE: chat.output_text,
        sc.CHATSPAN_LATENCY_MS: chat.latency_ms,
        sc.GEN_AI_USAGE_INPUT_TOKENS: chat.input_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: chat.output_tokens,
    }
    if status == "cancelled":
        attributes[sc.CHATSPAN_STATUS] = "cancelled"
    start = _ns(moment)
    return SpanData(trace, span, "chat", start, start + 1, status == "error", attributes), chat


def error_span(j: int, moment: datetime) -> tuple[SpanData, SeedError]:
    trace, span = _ids("error", j)
    kind = list(_STACKS)[j % 3]
    node = "llm" if kind == "dify.node_failed" else None
    seed = SeedError(
        id=str(uuid.UUID(row_id(f"{trace:032x}", f"{span:016x}", 0))),
        created_at=moment,
        trace_id=f"{trace:032x}",
        user_id=USERS[j % 4] if j % 6 else None,
        app_id="app-a" if j % 2 else "app-b",
        type_error=kind,
        node=node,
        error_message=f"failure number {j}",
    )
    event = {sc.EXCEPTION_TYPE: kind, sc.EXCEPTION_MESSAGE: seed.error_message}
    if _STACKS[kind]:
        event[sc.EXCEPTION_STACKTRACE] = _STACKS[kind]
    if node:
        event[sc.CHATSPAN_NODE_ID] = node
    attributes = {sc.DIFY_APP_ID: seed.app_id}
    if seed.user_id:
        attributes[sc.USER_ID] = seed.user_id
    start = _ns(moment)
    data = SpanData(
        trace,
        span,
        "POST /x",
        start,
        start + 1,
        True,
        attributes,
        (SpanEvent(sc.EXCEPTION_EVENT, start, event),),
    )
    return data, seed


def seed(url: str) -> tuple[list[SeedChat], list[SeedError]]:
    """60 chats over 15 days (three of them at the very same instant) and 25 errors."""
    spans, chats, errors = [], [], []
    for i in range(60):
        moment = BASE + timedelta(hours=6 * i, microseconds=123)
        if i in (31, 32):
            moment = BASE + timedelta(hours=6 * 30, microseconds=123)  # ties on created_at
        data, chat = chat_span(i, moment)
        spans.append(data)
        chats.append(chat)
    for j in range(25):
        data, error = error_span(j, BASE + timedelta(hours=13 * j, minutes=7))
        spans.append(data)
        errors.append(error)
    engine = make_engine(url, timeout_s=30)
    RecordWriter(engine).write(spans)
    engine.dispose()
    return chats, errors


def newest_first(rows: list) -> list[str]:
    return [
        r.id
        for r in sorted(rows, key=lambda r: (r.created_at, r.id.replace("-", "")), reverse=True)
    ]
