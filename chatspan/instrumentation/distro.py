"""Launcher defaults for ``opentelemetry-instrument``.

With chatspan installed, ``opentelemetry-instrument <app>`` needs nothing but the
database URL: traces go to ``chatspan_postgres`` unless ``OTEL_TRACES_EXPORTER`` says
otherwise, metrics and logs exporters default to ``none``, and ``otlp`` falls back to
OTLP over HTTP when the gRPC exporter is not installed. If configuring the SDK fails,
the app still starts, and one log line says why. Spans are batched by
:class:`~chatspan.exporters.processor.LateStartBatchSpanProcessor`, which works where
Dify's api runs: gunicorn workers that gevent-patch the standard library at import.
"""

from __future__ import annotations

import importlib.util
import logging
import os

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from chatspan.concurrency import use_native_logging_lock_at_exit
from chatspan.exporters.processor import LateStartBatchSpanProcessor

_logger = logging.getLogger(__name__)


class ChatspanDistro(BaseDistro):
    """Sets chatspan's defaults before the SDK reads the environment."""

    def _configure(self, **kwargs: object) -> None:
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "chatspan_postgres")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
        _prefer_available_otlp()
        use_native_logging_lock_at_exit()


class ChatspanConfigurator(_OTelSDKConfigurator):
    """The SDK's own configurator, made unable to stop the app from starting, and with
    a batch processor whose thread starts late enough for gevent and prefork servers."""

    def _configure(self, **kwargs: object) -> None:
        kwargs.setdefault("export_span_processor", LateStartBatchSpanProcessor)
        try:
            super()._configure(**kwargs)
        except Exception as error:
            _logger.error(
                "chatspan: OpenTelemetry tracing is off for this process: %s: %s "
                "(the app runs normally; fix the setting and restart to record chats)",
                type(error).__name__,
                error,
            )


def _prefer_available_otlp() -> None:
    """``otlp`` names the gRPC exporter; use the HTTP one when only that is installed."""
    names = [n.strip() for n in os.environ["OTEL_TRACES_EXPORTER"].split(",")]
    if "otlp" not in names or importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc"):
        return
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http"):
        names = ["otlp_proto_http" if n == "otlp" else n for n in names]
        os.environ["OTEL_TRACES_EXPORTER"] = ",".join(names)
        _logger.info("chatspan: the OTLP gRPC exporter is not installed; exporting OTLP over HTTP")
