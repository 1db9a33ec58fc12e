"""Per-request cost of chatspan's instrumentation on a Flask chat app.

Instances of the Dify-shaped example app serve the same requests in one process:
(a) bare, (b) with OpenTelemetry's Flask instrumentation, (c) with (b) plus chatspan,
(d) like (c) but with chatspan's span not sampled: d-b is what a chat dropped by a
sampler costs (its request is read, its answer is not); and (e) (b) plus only
the span the design asks for (an INTERNAL child of the server span with the attributes
chatspan gives the same chat, copied from a recorded one): e-b is what any
implementation pays before reading a byte, the floor under c-b.
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

from flask import g
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind
from werkzeug.test import EnvironBuilder

from chatspan.examples.dify_flask import create_app
from chatspan.instrumentation import ChatInstrumentor

APP_KEY = "app-benchmarkKey0123456789"


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class KeepingExporter(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def chat_span_of(mode: str) -> ReadableSpan:
    """The chat span chatspan records for one request of `mode`."""
    exporter = KeepingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app()
    ChatInstrumentor().instrument_app(app, tracer_provider=provider)
    serve(app, request_factory(mode), 1)
    ChatInstrumentor().uninstrument_app(app)
    return next(s for s in exporter.spans if s.kind is SpanKind.INTERNAL)


def add_span_only(app, provider: TracerProvider, recorded: ReadableSpan) -> None:
    """Variant (e): the chat span's SDK cost alone: started in the view's context with
    the request's attributes, given the response's and ended when the request ends."""
    tracer = provider.get_tracer("floor")
    attributes = dict(recorded.attributes)
    at_start = {k: v for k, v in attributes.items() if not k.startswith(_RESPONSE_KEYS)}
    at_end = {k: v for k, v in attributes.items() if k not in at_start}

    @app.before_request
    def start_chat_span() -> None:
        g.chat_span = tracer.start_span(recorded.name, attributes=at_start)

    @app.teardown_request
    def end_chat_span(_error: BaseException | None) -> None:
        g.chat_span.set_attributes(at_end)
        g.chat_span.end()


_RESPONSE_KEYS = (
    "gen_ai.response",
    "gen_ai.usage",
    "dify.usage",
    "gen_ai.conversation",
    "session.id",
    "output.value",
    "gen_ai.output",
)


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


def paired(upper: list[float], lower: list[float]) -> tuple[float, float]:
    """Median over rounds of upper/lower and of upper-lower (in us), round by round."""
    pairs = list(zip(upper, lower, strict=True))
    return (
        statistics.median(high / low for high, low in pairs),
        statistics.median((high - low) * 1e6 for high, low in pairs),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    print(f"{args.requests} requests per variant per round, {args.rounds} rounds")
    for mode in ("blocking", "streaming"):
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(DiscardingExporter()))
        apps = {name: create_app() for name in "abcde"}
        for name in "bcde":
            FlaskInstrumentor().instrument_app(apps[name], tracer_provider=provider)
        ChatInstrumentor().instrument_app(apps["c"], tracer_provider=provider)
        unsampled = TracerProvider(sampler=ALWAYS_OFF)
        ChatInstrumentor().instrument_app(apps["d"], tracer_provider=unsampled)
        add_span_only(apps["e"], provider, chat_span_of(mode))

        make_environ = request_factory(mode)
        for app in apps.values():  # warm up
            serve(app, make_environ, 200)
        timings: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, app in apps.items():
                timings[name].append(serve(app, make_environ, args.requests))
        provider.shutdown()
        us = {name: statistics.median(values) * 1e6 for name, values in timings.items()}

        ratio, added = paired(timings["c"], timings["b"])
        floor_ratio, floor_added = paired(timings["e"], timings["b"])
        print(f"\n{mode} chat (us/request, median of rounds)")
        print(f"  (a) bare app                        {us['a']:8.1f}")
        print(f"  (b) OpenTelemetry Flask             {us['b']:8.1f}")
        print(f"  (c) (b) + chatspan                  {us['c']:8.1f}")
        print(f"  (d) (c), chatspan's span not sampled {us['d']:7.1f}")
        print(f"  (e) (b) + the chat span alone       {us['e']:8.1f}")
        print(f"  c/b = {ratio:.3f}   (target <= 1.15)")
        print(f"  c-b = {added:.1f} us added per request   (target <= 60)")
        print(f"  a chat the sampler drops: d-b = {us['d'] - us['b']:.1f} us")
        print(
            f"  floor: e/b = {floor_ratio:.3f}, e-b = {floor_added:.1f} us (the span, no reading)"
        )
        print(f"  chatspan above the floor: c-e = {us['c'] - us['e']:.1f} us")


if __name__ == "__main__":
    main()
