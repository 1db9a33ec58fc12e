"""chatspan's late-start batch processor vs the SDK's BatchSpanProcessor.

Usage: python bench/span_processor.py [--spans 20000] [--rounds 5]
Two numbers per processor, interleaved round by round in this process so the ratios
hold on a noisy machine: the time the app's thread spends handing a finished span over
(`on_end`, what each request pays), and spans/s from first span to all exported to an
exporter that only counts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from chatspan.exporters.processor import LateStartBatchSpanProcessor


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def run(processor_type: type, spans: list[ReadableSpan]) -> tuple[float, float]:
    """(µs per on_end, spans/s to exported) for one fresh processor."""
    exporter = CountingExporter()
    processor = processor_type(exporter, max_queue_size=len(spans) + 1, schedule_delay_millis=50)
    started = time.perf_counter()
    for span in spans:
        processor.on_end(span)
    handed_over = time.perf_counter()
    if not processor.force_flush(30_000) or exporter.count != len(spans):
        raise SystemExit(f"{processor_type.__name__} exported {exporter.count} of {len(spans)}")
    finished = time.perf_counter()
    processor.shutdown()
    return (handed_over - started) / len(spans) * 1e6, len(spans) / (finished - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tracer = TracerProvider().get_tracer("bench")
    spans = []
    for i in range(args.spans):
        span = tracer.start_span(f"chat {i}", attributes={"gen_ai.operation.name": "chat"})
        span.end()
        spans.append(span)
    kinds = {"sdk": BatchSpanProcessor, "chatspan": LateStartBatchSpanProcessor}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in kinds}
    for _ in range(args.rounds):
        for name, processor_type in kinds.items():
            results[name].append(run(processor_type, spans))
    median = {
        name: (
            statistics.median(r[0] for r in rounds),
            statistics.median(r[1] for r in rounds),
        )
        for name, rounds in results.items()
    }
    for name, (on_end_us, per_s) in median.items():
        print(f"{name:9} on_end {on_end_us:6.2f} us/span   {per_s:10,.0f} spans/s exported")
    sdk, ours = median["sdk"], median["chatspan"]
    print(f"on_end cost: chatspan / sdk = {ours[0] / sdk[0]:.2f}x")
    print(f"throughput: chatspan / sdk = {ours[1] / sdk[1]:.2f}x")


if __name__ == "__main__":
    main()
