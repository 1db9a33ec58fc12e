"""What the chatspan exporters share: deliver a batch now, or keep it in the spool.

:class:`SpooledSpanExporter` is the ``export`` both destinations run: a batch goes
straight to the destination unless earlier batches wait in the spool (then it queues
behind them, so rows arrive in order); a destination that is unavailable gets the batch
on disk, for the spool's thread to deliver later. Subclasses say only how to deliver a
batch and what to close.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Sequence
from typing import overload

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from chatspan.exporters.spool import Spool
from chatspan.records import SpanData

_logger = logging.getLogger(__name__)


class Outcome(enum.Enum):
    STORED = "stored"
    REFUSED = "refused"  # the destination said no, and would say no again
    UNAVAILABLE = "unavailable"  # down, throttled or unreachable: worth trying later


class SpooledSpanExporter(SpanExporter):
    """A span exporter that never raises and, with a spool, never loses a batch."""

    destination = "the destination"

    def __init__(self, spool: Spool | None) -> None:
        self._spool = spool
        if spool is not None and spool.pending():
            spool.start()  # what an earlier (perhaps crashed) process left behind
        self._is_shutdown = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._is_shutdown:
            return SpanExportResult.FAILURE
        batch = LazilyRead(spans)
        spool = self._spool
        if spool is not None and spool.backing_up:
            # The destination is down and earlier batches wait: queue behind them at once.
            return SpanExportResult.SUCCESS if spool.put(batch) else SpanExportResult.FAILURE
        try:
            outcome = self._deliver(batch)
        except Exception as failure:  # never into the app's span processor
            _logger.error(
                "chatspan: could not deliver %d span(s) to %s: %s",
                len(batch),
                self.destination,
                self._describe(failure),
            )
            outcome = Outcome.UNAVAILABLE
        if outcome is Outcome.UNAVAILABLE:
            # Kept on disk for the spool's thread to deliver: nothing is lost.
            stored_later = spool is not None and spool.put(batch)
            return SpanExportResult.SUCCESS if stored_later else SpanExportResult.FAILURE
        if spool is not None:
            spool.start()  # replays what earlier (or crashed) processes left
        return SpanExportResult.SUCCESS if outcome is Outcome.STORED else SpanExportResult.FAILURE

    @property
    def is_shut_down(self) -> bool:
        return self._is_shutdown

    @property
    def spool(self) -> Spool | None:
        return self._spool

    def shutdown(self) -> None:
        self._is_shutdown = True
        if self._spool is not None:
            self._spool.stop()
        self._close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export delivers (or spools) before it returns: nothing is held

    def _deliver(self, batch: Sequence[SpanData]) -> Outcome:
        """Send one batch; raising counts as UNAVAILABLE."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release connections at shutdown."""

    @staticmethod
    def _describe(failure: Exception) -> str:
        """One line about a failure for the log, with nothing secret in it."""
        return type(failure).__name__


class LazilyRead(Sequence[SpanData]):
    """SDK spans as :class:`SpanData`, each read when first reached, then kept.

    The PostgreSQL writer streams a batch into the database as it maps it; read lazily,
    the spans are read within that stream too, so the database stores early rows while
    later spans are read. Read all first, they kept the database idle for a sixth of the
    exporter's time (bench/export_throughput.py: 7% more rows/s read lazily).
    """

    def __init__(self, spans: Sequence[ReadableSpan]) -> None:
        self._spans = spans
        self._read: list[SpanData] = []

    def __len__(self) -> int:
        return len(self._spans)

    def __iter__(self) -> Iterator[SpanData]:
        read, spans = self._read, self._spans
        for index in range(len(spans)):
            if index == len(read):
                read.append(SpanData.from_sdk(spans[index]))
            yield read[index]

    @overload
    def __getitem__(self, index: int) -> SpanData: ...
    @overload
    def __getitem__(self, index: slice) -> list[SpanData]: ...
    def __getitem__(self, index: int | slice) -> SpanData | list[SpanData]:
        return list(self)[index]
