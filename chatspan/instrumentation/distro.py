"""Launcher defaults for ``opentelemetry-instrument``.

With chatspan installed, ``opentelemetry-instrument <app>`` needs nothing but the
database URL: traces go to ``chatspan_postgres`` unless ``OTEL_TRACES_EXPORTER`` says
otherwise, metrics and logs exporters default to ``none``, and ``otlp`` falls back to
OTLP over HTTP when the gRPC exporter is not installed. If configuring the SDK fails,
the app still starts, and one log line says why. Spans are batched by
:class:`~chatspan.exporters.processor.LateStartBatchSpanProcessor`, which works where
Dify's api runs: gunicorn workers that gevent-patch the standard library at import.

Another distro or configurator may win (Dify 1.x installs ``opentelemetry-distro``, and
``opentelemetry-instrument`` loads whichever comes up first unless
``OTEL_PYTHON_DISTRO`` / ``OTEL_PYTHON_CONFIGURATOR`` name one), or the app may set its
own TracerProvider before chatspan's instrumentation starts: chatspan then adds its
exporter to that provider (:func:`join_provider`) rather than replace it, so chats are
recorded whoever configured the SDK.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk import _configuration as sdk_configuration
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from chatspan.concurrency import use_native_logging_lock_at_exit
from chatspan.exporters.processor import LateStartBatchSpanProcessor

_logger = logging.getLogger(__name__)


class ChatspanDistro(BaseDistro):
    """Sets chatspan's defaults before the SDK reads the environment."""

    def _configure(self, **kwargs: object) -> None:
        global _defaults_set  # noqa: PLW0603  (once per process, before any configurator)
        _defaults_set = True
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "chatspan_postgres")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
        _prefer_available_otlp()
        _drop_missing_exporters()
        use_native_logging_lock_at_exit()


class ChatspanConfigurator(_OTelSDKConfigurator):
    """The SDK's own configurator, made unable to stop the app from starting, and with
    a batch processor whose thread starts late enough for gevent and prefork servers."""

    def _configure(self, **kwargs: Any) -> None:
        try:
            with _late_start_batching(kwargs):
                super()._configure(**kwargs)
        except Exception as error:
            _logger.error(
                "chatspan: OpenTelemetry tracing is off for this process: %s: %s "
                "(the app runs normally; fix the setting and restart to record chats)",
                type(error).__name__,
                error,
            )


# Whether chatspan's distro set this process's launcher defaults: OTEL_TRACES_EXPORTER is
# then either the operator's choice or chatspan's default, and is followed as it is.
_defaults_set = False


@contextlib.contextmanager
def _late_start_batching(kwargs: dict[str, Any]) -> Iterator[None]:
    """Batch every exporter with LateStartBatchSpanProcessor while the SDK configures.

    SDKs from 1.40 take the processor class as an argument; older ones (Dify 0.15.3
    pins 1.29) build ``BatchSpanProcessor`` by name in their configuration module, which
    is swapped for chatspan's for the duration of the configuration only.
    """
    takes_it = (
        "export_span_processor"
        in inspect.signature(sdk_configuration._initialize_components).parameters
    )
    if takes_it:
        kwargs.setdefault("export_span_processor", LateStartBatchSpanProcessor)
        yield
        return
    sdk_batch = sdk_configuration.BatchSpanProcessor  # type: ignore[attr-defined]
    sdk_configuration.BatchSpanProcessor = LateStartBatchSpanProcessor  # type: ignore[attr-defined]
    try:
        yield
    finally:
        sdk_configuration.BatchSpanProcessor = sdk_batch  # type: ignore[attr-defined]


def join_provider(provider: Any) -> None:
    """Record chats through a TracerProvider that chatspan's launcher defaults did not
    shape: another distro won (its OTEL_TRACES_EXPORTER default is ``otlp``), or the
    app set its own provider. chatspan adds its exporter there (batched by
    LateStartBatchSpanProcessor) instead of replacing the provider, unless the process
    already has a chatspan exporter (made by a configurator told
    ``OTEL_TRACES_EXPORTER=chatspan_postgres``, or by the app).
    """
    from chatspan.exporters.postgres import PostgresSpanExporter  # noqa: PLC0415

    if _defaults_set or not hasattr(provider, "add_span_processor"):
        return
    if PostgresSpanExporter.made_in_this_process():
        return
    try:
        exporter = PostgresSpanExporter()
    except Exception as error:  # a bad setting: one line, the app runs
        _logger.error("chatspan: chats are not recorded: %s: %s", type(error).__name__, error)
        return
    provider.add_span_processor(LateStartBatchSpanProcessor(exporter))
    _logger.info(
        "chatspan: chatspan's launcher defaults did not run (another distro, or the app's "
        "own TracerProvider); its exporter was added to the TracerProvider in place "
        "(OTEL_PYTHON_DISTRO=chatspan OTEL_PYTHON_CONFIGURATOR=chatspan choose chatspan's)"
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


def _drop_missing_exporters() -> None:
    """An exporter named in OTEL_TRACES_EXPORTER that is not installed is left out, with
    one log line, rather than turn every exporter off (the SDK's configurator refuses
    the whole list): chats are still recorded when ``otlp`` is named but missing."""
    variable = "OTEL_TRACES_EXPORTER"
    installed = {entry.name for entry in entry_points(group="opentelemetry_traces_exporter")}
    names = [n.strip() for n in os.environ[variable].split(",") if n.strip()]
    kept, missing = [], []
    for name in names:
        (kept if name == "none" or _exporter_entry(name) in installed else missing).append(name)
    if not missing:
        return
    os.environ[variable] = ",".join(kept) or "none"
    _logger.error(
        "chatspan: %s names %s, which %s not installed; exporting to %s only "
        "(OTLP: pip install opentelemetry-exporter-otlp-proto-http or -grpc)",
        variable,
        ", ".join(missing),
        "is" if len(missing) == 1 else "are",
        ", ".join(kept) or "nothing",
    )


def _exporter_entry(name: str) -> str:
    """The entry point the SDK loads for an OTEL_TRACES_EXPORTER name (``otlp`` follows
    the OTLP protocol setting, as in the SDK)."""
    if name != "otlp":
        return name
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    return "otlp_proto_http" if protocol.strip() == "http/protobuf" else "otlp_proto_grpc"
