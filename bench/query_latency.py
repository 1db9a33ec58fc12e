"""Admin API latency on a large PostgreSQL store: p50/p95 per endpoint.

Seeds 1,000,000 chats, 100,000 errors and 10,000 users over 90 days into a scratch
database (COPY), then calls each endpoint through the real FastAPI app in this process
(no network) and prints p50/p95, with page 1 against a deep page by offset and by
cursor at the same depth. Targets: list endpoints p95 <= 50 ms at any depth by cursor;
log-stats over 30 days <= 500 ms.

Usage: python bench/query_latency.py [--chats 1000000] [--errors 100000] [--samples 30]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import psycopg
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from chatspan.config import ApiSettings
from chatspan.query_api import create_app
from chatspan.query_api.state import state_of
from chatspan.store import search_index
from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade
from chatspan.store.queries import Cursor

from pgdb import libpq_dsn, scratch_database

KEY = "bench-admin-key-0123456789abcdef"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAYS = 90
QUESTIONS = [
    "How do I reset my password?",
    "Where can I download my invoice for last month?",
    "Can I get a refund for an annual plan?",
    "Why does the export to CSV time out?",
    "How do I invite a teammate to my workspace?",
    "What are the rate limits of the API?",
]
ANSWER = "Here is what you can do: open Settings, choose the right section, follow the steps. "


def seed(dsn: str, chats: int, errors: int, users: int) -> None:
    rng = random.Random(4711)
    span = DAYS * 86400
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        started = time.perf_counter()
        with cursor.copy(
            "COPY dify_logs (id, created_at, trace_id, span_id, app_id, conversation_id, "
            "message_id, user_id, input_text, output_text, latency_ms, time_to_first_token_ms, "
            "model, provider, input_tokens, output_tokens, total_tokens, status, response_mode, "
            "route, service_name, attributes) FROM STDIN"
        ) as copy:
            for i in range(chats):
                user = int(rng.paretovariate(1.2)) % users
                inp, out = rng.randint(5, 300), rng.randint(20, 900)
                copy.write_row(
                    (
                        uuid.UUID(int=rng.getrandbits(128)),
                        NOW - timedelta(seconds=rng.random() * span),
                        f"{rng.getrandbits(128):032x}",
                        f"{rng.getrandbits(64):016x}",
                        f"app-{i % 20}",
                        f"conv-{user}-{rng.randint(0, 20)}",
                        str(i),
                        f"user-{user}",
                        f"{QUESTIONS[i % len(QUESTIONS)]} (ticket {i})",
                        ANSWER * 2,
                        rng.lognormvariate(6.5, 0.6),
                        rng.lognormvariate(5.5, 0.5),
                        "gpt-4o-mini",
                        "dify",
                        inp,
                        out,
                        inp + out,
                        "error" if rng.random() < 0.05 else "ok",
                        "streaming" if i % 2 else "blocking",
                        "/v1/chat-messages",
                        "dify-api",
                        Jsonb({}),
                    )
                )
        print(f"  seeded {chats:,} chats in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        with cursor.copy(
            "COPY error (id, created_at, trace_id, span_id, type_error, error_message, "
            "stacktrace, fingerprint, user_id, app_id, conversation_id, node, node_type, route, "
            "service_name, attributes) FROM STDIN"
        ) as copy:
            for j in range(errors):
                kind = j % 30
                copy.write_row(
                    (
                        uuid.UUID(int=rng.getrandbits(128)),
                        NOW - timedelta(seconds=rng.random() * span),
                        f"{rng.getrandbits(128):032x}",
                        f"{rng.getrandbits(64):016x}",
                        f"Error{kind}",
                        f"something failed while handling request {j}",
                        f'Traceback:\n  File "app.py", line {kind}, in run\n',
                        f"{kind % 200:032x}",
                        f"user-{rng.randrange(users)}",
                        f"app-{j % 20}",
                        None,
                        "llm" if kind % 3 == 0 else None,
                        "llm" if kind % 3 == 0 else None,
                        "/v1/chat-messages",
                        "dify-api",
                        Jsonb({}),
                    )
                )
        print(f"  seeded {errors:,} errors in {time.perf_counter() - started:.0f} s")
        connection.commit()
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE dify_logs")
        cursor.execute('VACUUM ANALYZE "error"')


def measure(client: TestClient, path: str, params: dict, samples: int) -> tuple[float, float]:
    for _ in range(3):
        assert client.get(path, params=params).status_code == 200
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.get(path, params=params)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    timings.sort()
    return statistics.median(timings), timings[max(0, round(0.95 * len(timings)) - 1)]


def cursor_at(dsn: str, table: str, depth: int, where: str = "TRUE") -> str:
    with psycopg.connect(dsn) as connection:
        created_at, row_id = connection.execute(
            f'SELECT created_at, id FROM "{table}" WHERE {where} '
            "ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (depth - 1,),
        ).fetchone()
    return Cursor(created_at, str(row_id)).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chats", type=int, default=1_000_000)
    parser.add_argument("--errors", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    base = os.environ.get("CHATSPAN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with scratch_database(base, "querybench") as url:
        engine = make_engine(url, timeout_s=120)
        upgrade(engine)
        engine.dispose()
        dsn = libpq_dsn(url)
        seed(dsn, args.chats, args.errors, args.users)
        started = time.perf_counter()
        engine = make_engine(url, timeout_s=3600)
        search_index.create(engine)  # as `chatspan db search-index create` does
        engine.dispose()
        print(f"  built the text search indexes in {time.perf_counter() - started:.0f} s")
        app = create_app(ApiSettings(database_url=url, admin_api_keys=(KEY,)))
        chats, errors = "/console/api/admin/chat-logs", "/console/api/admin/error-logs"
        shallow, deep = 50_000, min(500_000, args.chats - 100)
        busy_user = "user-1"
        cases = [
            ("chat-logs page 1", chats, {}),
            (f"chat-logs offset depth {shallow:,}", chats, {"page": shallow // 20}),
            (
                f"chat-logs cursor depth {shallow:,}",
                chats,
                {"cursor": cursor_at(dsn, "dify_logs", shallow)},
            ),
            (f"chat-logs offset depth {deep:,}", chats, {"page": deep // 20}),
            (
                f"chat-logs cursor depth {deep:,}",
                chats,
                {"cursor": cursor_at(dsn, "dify_logs", deep)},
            ),
            ("chat-logs user_id", chats, {"user_id": busy_user}),
            (
                "chat-logs user_id cursor depth 2,000",
                chats,
                {
                    "user_id": busy_user,
                    "cursor": cursor_at(dsn, "dify_logs", 2000, f"user_id = '{busy_user}'"),
                },
            ),
            ("chat-logs app_id", chats, {"app_id": "app-7"}),
            ("chat-logs status=error", chats, {"status": "error"}),
            (
                "chat-logs one day",
                chats,
                {
                    "since": (NOW - timedelta(days=3)).isoformat(),
                    "until": (NOW - timedelta(days=2)).isoformat(),
                },
            ),
            ("chat-logs q (rare)", chats, {"q": "ticket 424242"}),
            ("chat-logs q (common)", chats, {"q": "refund"}),
            ("user chat-history", f"/console/api/admin/users/{busy_user}/chat-history", {}),
            ("error-logs page 1", errors, {}),
            (
                "error-logs cursor deep",
                errors,
                {"cursor": cursor_at(dsn, "error", args.errors // 2)},
            ),
            ("error-logs type_error", errors, {"type_error": "Error7"}),
            ("error-groups by count", "/console/api/admin/error-groups", {}),
            (
                "error-groups 7 days",
                "/console/api/admin/error-groups",
                {"since": (NOW - timedelta(days=7)).isoformat()},
            ),
            ("log-stats 30 days", "/console/api/admin/log-stats", {}),
            (
                "log-stats 24 hours",
                "/console/api/admin/log-stats",
                {"since": (NOW - timedelta(days=1)).isoformat(), "until": NOW.isoformat()},
            ),
        ]
        print(f"\n{'endpoint':<42} {'p50 ms':>8} {'p95 ms':>8}")
        with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as client:
            for name, path, params in cases:
                samples = args.samples if "stats" not in name else max(5, args.samples // 3)
                p50, p95 = measure(client, path, params, samples)
                print(f"{name:<42} {p50:8.1f} {p95:8.1f}")
        state_of(app).engine.dispose()


if __name__ == "__main__":
    main()
