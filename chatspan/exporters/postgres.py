"""``chatspan_postgres``: an OpenTelemetry span exporter that writes rows.

Chat spans become ``dify_logs`` rows and ``exception`` events become ``error`` rows, in
any SQLAlchemy database chatspan supports (PostgreSQL in production, SQLite embedded).
It runs on the BatchSpanProcessor's thread, so the app never waits for it, and every
call it makes is bounded by ``CHATSPAN_EXPORT_TIMEOUT_S``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

from opentelemetry.instrumentation.utils import suppress_instrumentation

from chatspan.concurrency import run_blocking
from chatspan.config import SpoolSettings, StoreSettings
from chatspan.exporters.delivery import Outcome, SpooledSpanExporter
from chatspan.exporters.spool import open_spool
from chatspan.records import SpanData
from chatspan.store.engine import describe_error, make_engine, safe_url
from chatspan.store.migrate import SchemaGate
from chatspan.store.writer import RecordWriter

_made: weakref.WeakSet[PostgresSpanExporter] = weakref.WeakSet()


class PostgresSpanExporter(SpooledSpanExporter):
    """Stores chat spans and exception events; configured from the environment.

    Settings: ``CHATSPAN_DATABASE_URL``, ``CHATSPAN_EXPORT_TIMEOUT_S``,
    ``CHATSPAN_AUTO_MIGRATE``. A malformed setting raises :class:`chatspan.config.ConfigError`
    here, at start; ``export`` itself never raises.
    """

    def __init__(
        self, settings: StoreSettings | None = None, spool: SpoolSettings | None = None
    ) -> None:
        self._settings = settings or StoreSettings.from_env()
        _made.add(self)
        self._engine = make_engine(
            self._settings.database_url, timeout_s=self._settings.export_timeout_s
        )
        self._writer = RecordWriter(self._engine)
        self._schema = SchemaGate(self._engine, enabled=self._settings.auto_migrate)
        self.destination = safe_url(self._engine.url)
        super().__init__(
            open_spool(spool or SpoolSettings.from_env(), "postgres", self.destination, self._store)
        )

    @staticmethod
    def made_in_this_process() -> bool:
        """Whether a live exporter of this kind exists in this process (made by any
        configurator, or by the app)."""
        return any(not exporter.is_shut_down for exporter in _made)

    def _deliver(self, batch: Sequence[SpanData]) -> Outcome:
        # Under gevent, off the hub's thread: a hung database must not stop requests.
        run_blocking(self._store, batch)
        return Outcome.STORED

    def _close(self) -> None:
        self._engine.dispose()

    @staticmethod
    def _describe(failure: Exception) -> str:
        return describe_error(failure)  # the driver's error, without SQL or row content

    def _store(self, batch: Sequence[SpanData]) -> None:
        # The exporter's own database calls must not become spans to export.
        with suppress_instrumentation():
            self._schema.ensure()
            self._writer.write(batch)
