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

from chatspan.config import StoreSettings
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

    def __init__(self, settings: StoreSettings | None = None) -> None:
        self._settings = settings or StoreSettings.from_env()
        self._engine = make_engine(
            self._settings.database_url, timeout_s=self._settings.export_timeout_s
        )
        self._writer = RecordWriter(self._engine)
        self._schema = SchemaGate(self._engine, enabled=self._settings.auto_migrate)
        self._is_shutdown = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._is_shutdown:
            return SpanExportResult.FAILURE
        try:
            # The exporter's own database calls must not become spans to export.
            with suppress_instrumentation():
                self._schema.ensure()
                self._writer.write(SpanData.from_sdk(span) for span in spans)
        except Exception as failure:
            _logger.error(
                "chatspan: could not store %d span(s) in %s: %s",
                len(spans),
                safe_url(self._engine.url),
                describe_error(failure),
            )
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._is_shutdown = True
        self._engine.dispose()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        # Every export writes synchronously; there is nothing buffered here to flush.
        return True
