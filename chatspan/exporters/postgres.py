"""``chatspan_postgres``: an OpenTelemetry span exporter that writes rows.

Chat spans become ``dify_logs`` rows and ``exception`` events become ``error`` rows, in
any SQLAlchemy database chatspan supports (PostgreSQL in production, SQLite embedded).
It runs on the BatchSpanProcessor's thread, so the app never waits for it, and every
call it makes is bounded by ``CHATSPAN_EXPORT_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from chatspan.concurrency import run_blocking
from chatspan.config import SpoolSettings, StoreSettings
from chatspan.exporters.spool import Spool, open_spool
from chatspan.records import SpanData
from chatspan.store.engine import describe_error, make_engine, safe_url
from chatspan.store.migrate import SchemaGate
from chatspan.store.writer import RecordWriter

_logger = logging.getLogger(__name__)


class PostgresSpanExporter(SpanExporter):
    """Stores chat spans and exception events; configured from the environment.

    Settings: ``CHATSPAN_DATABASE_URL``, ``CHATSPAN_EXPORT_TIMEOUT_S``,
    ``CHATSPAN_AUTO_MIGRATE``. A malformed setting raises :class:`chatspan.config.ConfigError`
    here, at start; ``export`` itself never raises.
    """

    def __init__(
        self, settings: StoreSettings | None = None, spool: SpoolSettings | None = None
    ) -> None:
        self._settings = settings or StoreSettings.from_env()
        self._engine = make_engine(
            self._settings.database_url, timeout_s=self._settings.export_timeout_s
        )
        self._writer = RecordWriter(self._engine)
        self._schema = SchemaGate(self._engine, enabled=self._settings.auto_migrate)
        self._spool = open_spool(
            spool or SpoolSettings.from_env(), "postgres", safe_url(self._engine.url), self._store
        )
        if self._spool is not None and self._spool.pending():
            self._spool.start()  # what an earlier (perhaps crashed) process left behind
        self._is_shutdown = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._is_shutdown:
            return SpanExportResult.FAILURE
        batch = [SpanData.from_sdk(span) for span in spans]
        if self._spool is not None and self._spool.backing_up:
            # The destination is down and earlier batches wait: queue behind them at once.
            return SpanExportResult.SUCCESS if self._spool.put(batch) else SpanExportResult.FAILURE
        try:
            # Under gevent, off the hub's thread: a hung database must not stop requests.
            run_blocking(self._store, batch)
        except Exception as failure:
            _logger.error(
                "chatspan: could not store %d span(s) in %s: %s",
                len(batch),
                safe_url(self._engine.url),
                describe_error(failure),
            )
            # Kept on disk for the spool's thread to deliver: nothing is lost.
            stored_later = self._spool is not None and self._spool.put(batch)
            return SpanExportResult.SUCCESS if stored_later else SpanExportResult.FAILURE
        if self._spool is not None:
            self._spool.start()  # replays what earlier (or crashed) processes left
        return SpanExportResult.SUCCESS

    @property
    def spool(self) -> Spool | None:
        return self._spool

    def shutdown(self) -> None:
        self._is_shutdown = True
        if self._spool is not None:
            self._spool.stop()
        self._engine.dispose()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        # Every export writes synchronously (or to the spool); nothing is buffered here.
        return True

    def _store(self, batch: list[SpanData]) -> None:
        # The exporter's own database calls must not become spans to export.
        with suppress_instrumentation():
            self._schema.ensure()
            self._writer.write(batch)
