"""A batch span processor for prefork servers and gevent: its thread starts late.

The SDK's BatchSpanProcessor starts its export thread when it is made, and again in
every child right after a fork. In Dify's api (gunicorn; the app calls gevent's
`monkey.patch_all()` when it is imported, in the worker, after that fork) the thread
is already running when the patch comes, and gevent cannot make a process with a
second thread safe to patch: the worker fails to boot. This processor keeps the same
contract (`OTEL_BSP_*` settings, bounded queue, batches, flush on shutdown) but starts
its thread on the first span it is given, so after the app's import and its patch, and
on a real OS thread (chatspan.concurrency) even when `threading` is patched.

The thread does not poll: it sleeps until a batch is full or the schedule delay of the
oldest waiting span has passed, or until shutdown, on a native
:class:`~chatspan.concurrency.Wakeup` (never on gevent's locks or events, see there).
A span wakes it only when it is the first to wait or fills a batch, so an idle
worker's export thread never runs. `force_flush` exports in the caller's thread. No
lock is taken on the app's path: the queue is a deque, whose appends and pops are
atomic. After a fork, the child starts a thread of its own and drops the parent's
queue (the parent exports it). If the thread ever dies, the next span starts another,
and the death is logged.

chatspan's launcher configuration uses it for every exporter.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from functools import partial

from opentelemetry.context import Context
from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from chatspan.concurrency import Wakeup, start_thread

_logger = logging.getLogger(__name__)
THREAD_NAME = "chatspan-batch-span-processor"


class LateStartBatchSpanProcessor(SpanProcessor):
    """Batches finished spans to an exporter from a thread started by the first span."""

    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
    ) -> None:
        self._exporter = exporter
        self._max_queue = max_queue_size or _env_int(OTEL_BSP_MAX_QUEUE_SIZE, 2048)
        self._delay_s = (schedule_delay_millis or _env_int(OTEL_BSP_SCHEDULE_DELAY, 5000)) / 1000
        self._batch = min(
            max_export_batch_size or _env_int(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512), self._max_queue
        )
        self._timeout_s = _env_int(OTEL_BSP_EXPORT_TIMEOUT, 30_000) / 1000
        self._queue: deque[ReadableSpan] = deque()
        self._thread_pid: int | None = None  # the process whose export thread runs
        self._wakeup = Wakeup()  # a span to wait for, a full batch, or shutdown
        self._stopped = Wakeup()  # the export thread has ended
        self._oldest_at = 0.0  # when the oldest waiting span arrived
        self._dropped = 0
        self._shutdown = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._shutdown or not span.context.trace_flags.sampled:
            return
        if self._thread_pid != os.getpid():
            self._start()
        if len(self._queue) >= self._max_queue:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                _logger.warning(
                    "chatspan: span queue full (%d); dropped %d span(s)",
                    self._max_queue,
                    self._dropped,
                )
            return
        first = not self._queue
        if first:
            self._oldest_at = time.monotonic()
        self._queue.append(span)
        if first or len(self._queue) == self._batch:
            self._wakeup.set()  # a delay to start waiting out, or a batch to send now

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        while self._queue and time.monotonic() < deadline:
            self._export_batch()
        return not self._queue

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        deadline = time.monotonic() + self._timeout_s
        if self._thread_pid == os.getpid():
            self._wakeup.set()
            self._stopped.wait(self._timeout_s)  # the batch it may be exporting
        self.force_flush(int(max(deadline - time.monotonic(), 0) * 1000))
        self._exporter.shutdown()

    def _start(self) -> None:
        if self._thread_pid is not None:
            # A forked child: the queue is the parent's, which exports it itself.
            self._queue.clear()
        self._thread_pid = os.getpid()
        # Each thread has its own signals (a forked child's copies hold the parent's
        # state); the processor's are the current thread's, and a thread whose signals
        # are no longer current (two spans raced to start one) ends when woken.
        previous, self._wakeup, self._stopped = self._wakeup, Wakeup(), Wakeup()
        previous.set()
        try:
            start_thread(partial(self._run, self._wakeup, self._stopped), THREAD_NAME)
        except RuntimeError:
            # The interpreter is exiting (Python 3.12 refuses new threads then): the span
            # waits in the queue for the flush that shutdown() does in its own thread.
            self._thread_pid = None

    def _run(self, wakeup: Wakeup, stopped: Wakeup) -> None:
        try:
            while not self._shutdown and self._wakeup is wakeup:
                wait_s = self._seconds_until_due()
                if wait_s == 0:
                    self._export_batch()
                else:
                    wakeup.wait(wait_s)
        except Exception:
            _logger.exception("chatspan: the span export thread failed; the next span restarts it")
        finally:
            if self._wakeup is wakeup:
                self._thread_pid = None
            stopped.set()

    def _seconds_until_due(self) -> float | None:
        """0 when a batch should leave now; None while no span waits."""
        if not self._queue:
            return None
        if len(self._queue) >= self._batch:
            return 0
        return max(0.0, self._oldest_at + self._delay_s - time.monotonic())

    def _export_batch(self) -> None:
        batch = []
        while self._queue and len(batch) < self._batch:
            try:
                batch.append(self._queue.popleft())
            except IndexError:  # another flusher took the last one
                break
        if self._queue:
            self._oldest_at = time.monotonic()
        if batch:
            try:
                self._exporter.export(batch)
            except Exception:  # an exporter must not raise; if one does, keep going
                _logger.exception(
                    "chatspan: an exporter raised while exporting %d span(s)", len(batch)
                )


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        _logger.warning("chatspan: %s is not a number; using %d", name, default)
        return default
    return value if value > 0 else default
