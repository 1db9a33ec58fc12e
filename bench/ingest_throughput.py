"""Spans/s into PostgreSQL through POST /v1/traces vs through the direct exporter.

The same chat spans (a quarter of them with an exception) go into two scratch
databases, round after round, alternating: once as a collector sends them (OTLP/HTTP
protobuf, gzip, 512 spans a request) to `chatspan serve` running in its own process,
once through chatspan_postgres in this process (512 spans an export). Encoding the
requests is the collector's work and happens before the clock starts. Target: ingest
at least 0.5x the direct exporter.

Usage: python bench/ingest_throughput.py [--spans 20480] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExportResult
from sqlalchemy import text

from chatspan.config import SpoolSettings, StoreSettings
from chatspan.exporters.postgres import PostgresSpanExporter
from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade

from pgdb import scratch_database
from rows import count_rows
from servers import clean_env, run_chatspan_serve
from spans import chat_spans

BATCH = 512
INGEST_KEY = "bench-ingest-key-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=20_480)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spans = chat_spans(args.spans, exception_every=4)
    expected = (len(spans), len(range(0, len(spans), 4)))  # every chat, every 4th has an error
    bodies = [
        gzip.compress(encode_spans(spans[i : i + BATCH]).SerializeToString())
        for i in range(0, len(spans), BATCH)
    ]
    base = os.environ.get("CHATSPAN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with (
        scratch_database(base, "ingestbench") as ingest_url,
        scratch_database(base, "directbench") as direct_url,
    ):
        engines = {url: make_engine(url, timeout_s=60) for url in (ingest_url, direct_url)}
        for engine in engines.values():
            upgrade(engine)
        # No spool: a refused batch must fail the run, not wait on disk.
        exporter = PostgresSpanExporter(
            StoreSettings(database_url=direct_url, export_timeout_s=60),
            SpoolSettings(enabled=False),
        )
        env = clean_env(
            CHATSPAN_DATABASE_URL=ingest_url,
            CHATSPAN_INGEST_API_KEYS=INGEST_KEY,
            CHATSPAN_ADMIN_API_KEYS="bench-admin-key-0123456789abcdef",
        )
        with (
            run_chatspan_serve(Path(os.environ.get("TMPDIR", "/tmp")), env) as server,
            httpx.Client(
                base_url=server.base_url,
                headers={
                    "Authorization": f"Bearer {INGEST_KEY}",
                    "Content-Type": "application/x-protobuf",
                    "Content-Encoding": "gzip",
                },
                timeout=60,
            ) as client,
        ):
            rates: dict[str, list[float]] = {"ingest": [], "direct": []}
            for _ in range(args.rounds):
                for engine in engines.values():
                    with engine.begin() as connection:
                        connection.execute(text('TRUNCATE dify_logs, "error"'))
                started = time.perf_counter()
                for body in bodies:
                    response = client.post("/v1/traces", content=body)
                    if response.status_code != 200 or response.content:
                        # A partial success is a 200 with a body that says what was rejected.
                        raise SystemExit(f"ingest answered {response.status_code}: {response.text}")
                rates["ingest"].append(len(spans) / (time.perf_counter() - started))
                started = time.perf_counter()
                for i in range(0, len(spans), BATCH):
                    if exporter.export(spans[i : i + BATCH]) is not SpanExportResult.SUCCESS:
                        raise SystemExit("the exporter failed: see the log line above")
                rates["direct"].append(len(spans) / (time.perf_counter() - started))
                stored = {url: _rows(url) for url in engines}
                if set(stored.values()) != {expected}:
                    raise SystemExit(f"stored {stored}, expected {expected} (chats, errors)")
        exporter.shutdown()
        for engine in engines.values():
            engine.dispose()

    ratios = [i / d for i, d in zip(rates["ingest"], rates["direct"], strict=True)]
    print(f"{len(spans)} spans per round ({len(bodies)} requests of {BATCH}), {args.rounds} rounds")
    for name, label in (
        ("ingest", "POST /v1/traces (protobuf, gzip)"),
        ("direct", "chatspan_postgres exporter"),
    ):
        rounds = ", ".join(f"{r:,.0f}" for r in rates[name])
        print(f"  {label:<34} {statistics.median(rates[name]):>9,.0f} spans/s   (rounds: {rounds})")
    print(f"ingest / direct = {statistics.median(ratios):.2f}x   (target >= 0.5)")


def _rows(url: str) -> tuple[int, int]:
    """Chat and error rows stored."""
    return count_rows(url, "dify_logs"), count_rows(url, "error")


if __name__ == "__main__":
    main()
