"""Per-request cost of chatspan's instrumentation on a Flask chat app.

Three instances of the Dify-shaped example app serve the same requests in one process:
(a) bare, (b) with OpenTelemetry's Flask instrumentation, (c) with (b) plus chatspan,
and (d) like (c) but with chatspan's span unsampled: d-b is chatspan's own reading of
the request and the answer, c-d what its span costs in the SDK.
Requests go straight into the WSGI callable (no network, no server), rounds
interleave the three, and spans go to a BatchSpanProcessor whose exporter discards
them, so what is measured is the instrumentation, not the database.

Usage: python bench/instrumentation_overhead.py [--requests 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from werkzeug.test import EnvironBuilder

from chatspan.examples.dify_flask import create_app
from chatspan.instrumentation import ChatInstrumentor

APP_KEY = "app-benchmarkKey0123456789"


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def request_factory(mode: str) -> Callable[[], dict]:
    """Fresh WSGI environs for one kind of chat request, cheap to make."""
    body = json.dumps(
        {
            "inputs": {},
            "query": "How do I rotate my API keys without downtime?",
            "user": "bench-user",
            "response_mode": mode,
        }
    ).encode()
    template = EnvironBuilder(
        path="/v1/chat-messages",
        method="POST",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {APP_KEY}"},
    ).get_environ()

    def make() -> dict:
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(body)
        return environ

    return make


def serve(app, make_environ: Callable[[], dict], count: int) -> float:
    """Seconds per request, the response read to its end as a server would."""

    def start_response(status, headers, exc_info=None):
        return None

    started = time.perf_counter()
    for _ in range(count):
        body = app(make_environ(), start_response)
        for _chunk in body:
            pass
        body.close()
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardingExporter()))
    bare, flask_only, with_chatspan, unsampled = (create_app() for _ in range(4))
    for app in (flask_only, with_chatspan, unsampled):
        FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    ChatInstrumentor().instrument_app(with_chatspan, tracer_provider=provider)
    ChatInstrumentor().instrument_app(unsampled, tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    apps = {"a": bare, "b": flask_only, "c": with_chatspan, "d": unsampled}

    print(f"{args.requests} requests per variant per round, {args.rounds} rounds")
    for mode in ("blocking", "streaming"):
        make_environ = request_factory(mode)
        for app in apps.values():  # warm up
            serve(app, make_environ, 200)
        timings: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, app in apps.items():
                timings[name].append(serve(app, make_environ, args.requests))
        us = {name: statistics.median(values) * 1e6 for name, values in timings.items()}
        ratios = [c / b for b, c in zip(timings["b"], timings["c"], strict=True)]
        added = [(c - b) * 1e6 for b, c in zip(timings["b"], timings["c"], strict=True)]
        print(f"\n{mode} chat (us/request, median of rounds)")
        print(f"  (a) bare app                      {us['a']:8.1f}")
        print(f"  (b) OpenTelemetry Flask           {us['b']:8.1f}")
        print(f"  (c) (b) + chatspan                {us['c']:8.1f}")
        print(f"  (d) (c), chatspan's span unsampled {us['d']:7.1f}")
        print(f"  c/b = {statistics.median(ratios):.3f}   (target <= 1.15)")
        print(f"  c-b = {statistics.median(added):.1f} us added per request   (target <= 60)")
        print(
            f"  of which reading the chat (d-b) {us['d'] - us['b']:.1f}, its span (c-d) "
            f"{us['c'] - us['d']:.1f}"
        )
    provider.shutdown()


if __name__ == "__main__":
    main()
