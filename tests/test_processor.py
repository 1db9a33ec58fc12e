"""LateStartBatchSpanProcessor: the batch processor chatspan's launcher set-up uses.

Its thread starts with the first span (so after a gunicorn fork and the app's gevent
patch), it batches by size and delay, bounds its queue, flushes on shutdown, survives
an exporter that raises or a thread that dies, and a forked child exports only its own
spans."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from chatspan.concurrency import Wakeup
from chatspan.exporters import processor as processor_module
from chatspan.exporters.processor import THREAD_NAME, LateStartBatchSpanProcessor

from servers import wait_for
from wakeups import needs_proc, thread_named, wakeups


class RecordingExporter(SpanExporter):
    """Keeps each batch's span names; can be made to wait or to raise."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.raise_next = False
        self.was_shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.gate.wait(10)
        if self.raise_next:
            self.raise_next = False
            raise RuntimeError("exporter bug")
        self.batches.append([span.name for span in spans])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.was_shut_down = True

    def names(self) -> list[str]:
        return [name for batch in self.batches for name in batch]


_tracer = TracerProvider().get_tracer("test")


def _span(name: str) -> ReadableSpan:
    span = _tracer.start_span(name)
    span.end()
    return span


def _processor_threads() -> int:
    return sum(thread.name == THREAD_NAME for thread in threading.enumerate())


@pytest.fixture(autouse=True)
def no_processor_thread_left():
    """Each test starts with no export thread alive, so it can count its own."""
    wait_for(lambda: _processor_threads() == 0, what="earlier export threads to end")


def test_no_thread_runs_until_the_first_span():
    exporter = RecordingExporter()
    before = _processor_threads()
    processor = LateStartBatchSpanProcessor(exporter, schedule_delay_millis=50)
    assert _processor_threads() == before
    processor.on_end(_span("first"))
    assert _processor_threads() == before + 1
    wait_for(lambda: exporter.names() == ["first"], what="the first span exported")
    processor.shutdown()


def test_spans_leave_in_batches_of_the_set_size_after_the_delay():
    exporter = RecordingExporter()
    processor = LateStartBatchSpanProcessor(
        exporter, schedule_delay_millis=100, max_export_batch_size=4
    )
    for i in range(10):
        processor.on_end(_span(f"s{i}"))
    wait_for(lambda: len(exporter.names()) == 10, what="10 spans exported")
    assert exporter.names() == [f"s{i}" for i in range(10)]
    assert max(len(batch) for batch in exporter.batches) <= 4
    processor.shutdown()


def test_a_full_batch_leaves_without_waiting_for_the_delay():
    exporter = RecordingExporter()
    processor = LateStartBatchSpanProcessor(
        exporter, schedule_delay_millis=600_000, max_export_batch_size=5
    )
    for i in range(4):
        processor.on_end(_span(f"s{i}"))
    time.sleep(0.3)
    assert exporter.batches == []  # neither full nor due
    processor.on_end(_span("s4"))
    wait_for(lambda: exporter.batches == [[f"s{i}" for i in range(5)]], what="one full batch")
    processor.shutdown()


def test_a_full_queue_drops_new_spans_and_says_so_once(caplog):
    exporter = RecordingExporter()
    exporter.gate.clear()  # the export thread is stuck in its first export
    processor = LateStartBatchSpanProcessor(
        exporter, max_queue_size=3, schedule_delay_millis=10, max_export_batch_size=1
    )
    processor.on_end(_span("taken"))
    wait_for(lambda: not processor._queue, what="the first span taken for export")
    with caplog.at_level(logging.WARNING, logger="chatspan"):
        for i in range(6):
            processor.on_end(_span(f"q{i}"))
    warnings = [r for r in caplog.records if "span queue full" in r.getMessage()]
    assert len(warnings) == 1
    exporter.gate.set()
    processor.shutdown()  # waits for the export in flight, then exports the queue
    assert exporter.names() == ["taken", "q0", "q1", "q2"]


def test_shutdown_exports_what_waits_and_shuts_the_exporter_down():
    exporter = RecordingExporter()
    processor = LateStartBatchSpanProcessor(exporter, schedule_delay_millis=600_000)
    for i in range(7):
        processor.on_end(_span(f"s{i}"))
    assert exporter.batches == []
    processor.shutdown()
    assert exporter.names() == [f"s{i}" for i in range(7)]
    assert exporter.was_shut_down
    processor.on_end(_span("late"))
    assert "late" not in exporter.names()


def test_force_flush_exports_everything_now():
    exporter = RecordingExporter()
    processor = LateStartBatchSpanProcessor(exporter, schedule_delay_millis=600_000)
    for i in range(3):
        processor.on_end(_span(f"s{i}"))
    assert processor.force_flush() is True
    assert exporter.names() == ["s0", "s1", "s2"]
    processor.shutdown()


def test_an_exporter_that_raises_is_logged_and_later_spans_still_leave(caplog):
    exporter = RecordingExporter()
    exporter.raise_next = True
    processor = LateStartBatchSpanProcessor(exporter, schedule_delay_millis=20)
    with caplog.at_level(logging.ERROR, logger="chatspan"):
        processor.on_end(_span("lost"))
        wait_for(lambda: not exporter.raise_next, what="the failing export")
        processor.on_end(_span("after"))
        wait_for(lambda: exporter.names() == ["after"], what="the next span exported")
    assert any("an exporter raised" in r.getMessage() for r in caplog.records)
    processor.shutdown()


def test_a_dead_export_thread_is_logged_and_the_next_span_starts_another(monkeypatch, caplog):
    exporter = RecordingExporter()
    processor = LateStartBatchSpanProcessor(exporter, schedule_delay_millis=600_000)

    class DyingWakeup(Wakeup):
        def wait(self, timeout: float | None = None) -> bool:
            monkeypatch.setattr(processor_module, "Wakeup", Wakeup)  # the next thread lives
            raise RuntimeError("the thread's own bug")

    monkeypatch.setattr(processor_module, "Wakeup", DyingWakeup)
    before = _processor_threads()
    with caplog.at_level(logging.ERROR, logger="chatspan"):
        processor.on_end(_span("one"))
        wait_for(lambda: _processor_threads() == before, what="the thread to die")
    assert any("the span export thread failed" in r.getMessage() for r in caplog.records)
    processor.on_end(_span("two"))
    assert _processor_threads() == before + 1
    processor.shutdown()
    assert exporter.names() == ["one", "two"]


@needs_proc
def test_the_export_thread_sleeps_while_idle_and_while_a_span_waits_out_the_delay():
    exporter = RecordingExporter()
    processor = LateStartBatchSpanProcessor(exporter, schedule_delay_millis=1500)
    processor.on_end(_span("first"))
    thread = thread_named(THREAD_NAME)
    wait_for(lambda: exporter.names() == ["first"], what="the first span exported")
    idle_from = wakeups(thread)
    time.sleep(1)  # the time being measured: nothing to do
    idle = wakeups(thread) - idle_from
    waiting_from = wakeups(thread)
    processor.on_end(_span("second"))  # leaves 1.5 s from now
    time.sleep(1)
    waiting = wakeups(thread) - waiting_from
    assert exporter.names() == ["first"]
    wait_for(lambda: exporter.names() == ["first", "second"], what="the second span exported")
    processor.shutdown()
    assert idle == 0
    assert waiting <= 1  # woken by the span to start waiting out its delay; then asleep


class FileExporter(SpanExporter):
    """Appends "pid name" lines to a file: what each process exported."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            out.writelines(f"{os.getpid()} {span.name}\n" for span in spans)
        return SpanExportResult.SUCCESS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_exports_its_own_spans_and_not_its_parents(tmp_path):
    log = tmp_path / "exported.log"
    processor = LateStartBatchSpanProcessor(FileExporter(str(log)), schedule_delay_millis=600_000)
    processor.on_end(_span("parent-1"))
    processor.on_end(_span("parent-2"))  # waiting in the parent's queue at the fork
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            processor.on_end(_span("child"))
            processor.shutdown()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    processor.shutdown()
    lines = [line.split() for line in log.read_text().splitlines()]
    assert sorted(lines) == sorted(
        [[str(child), "child"], [str(os.getpid()), "parent-1"], [str(os.getpid()), "parent-2"]]
    )
