"""``ChatInstrumentor``: chat spans for Flask and FastAPI/Starlette chat apps.

Loaded by ``opentelemetry-instrument`` through the ``opentelemetry_instrumentor`` entry
point named ``chatspan`` (so ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=chatspan`` turns it
off), or used directly::

    ChatInstrumentor().instrument()              # every Flask and Starlette app
    ChatInstrumentor().instrument_app(app)       # one app
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from opentelemetry import trace

# Its module is marked `# type: ignore` as a whole, so mypy sees none of its names.
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from chatspan.config import CaptureSettings
from chatspan.instrumentation import (
    dify_objects,
    distro,
    flask_hooks,
    greenlets,
    model_calls,
    starlette_hooks,
    threads,
)
from chatspan.instrumentation.activation import ACTIVATION
from chatspan.instrumentation.redaction import Redactor
from chatspan.instrumentation.routing import (
    ChatRoute,
    Router,
    dify_routes,
    openai_routes,
    read_custom_routes,
)
from chatspan.instrumentation.telemetry import ChatTelemetry

__all__ = ["ChatInstrumentor", "ChatRoute", "settings_problems"]

_logger = logging.getLogger(__name__)


class ChatInstrumentor(BaseInstrumentor):
    """Records each chat request of Flask and Starlette apps as a chat span.

    Keyword arguments of ``instrument`` / ``instrument_app``: ``tracer_provider``, and
    ``routes``: extra :class:`ChatRoute` values, matched before the built-in Dify and
    OpenAI-compatible routes and those in ``CHATSPAN_CHAT_ROUTES``.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # hooks whichever of Flask, Starlette and gevent is installed

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = build_telemetry(kwargs.get("tracer_provider"), kwargs.get("routes", ()))
        ACTIVATION.enable_everywhere(telemetry)
        _install_hooks(kwargs.get("tracer_provider"))
        if kwargs.get("tracer_provider") is None:  # the process's provider, whoever set it
            distro.join_provider(trace.get_tracer_provider())

    def _uninstrument(self, **kwargs: Any) -> None:
        ACTIVATION.disable_everywhere()
        if not ACTIVATION.active:
            _uninstall_hooks()

    @staticmethod
    def instrument_app(
        app: Any,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        routes: Iterable[ChatRoute] = (),
    ) -> None:
        """Instrument one Flask or Starlette/FastAPI app (created before or after)."""
        telemetry = build_telemetry(tracer_provider, routes)
        ACTIVATION.enable_for(app, telemetry)
        _install_hooks(tracer_provider)
        if hasattr(app, "user_middleware"):  # Starlette: rebuild its stack with ours
            starlette_hooks.add_middleware(app)

    @staticmethod
    def uninstrument_app(app: Any) -> None:
        ACTIVATION.disable_for(app)


def build_telemetry(
    tracer_provider: trace.TracerProvider | None = None, routes: Iterable[ChatRoute] = ()
) -> ChatTelemetry:
    """Settings from the environment. A setting that is not understood is skipped and
    named in an error line; chats keep being recorded with the rest."""
    capture, custom, problems = _chat_settings(os.environ)
    for problem in problems:
        _logger.error("chatspan: %s", problem)
    return ChatTelemetry(
        tracer=trace.get_tracer("chatspan", tracer_provider=tracer_provider),
        router=Router([*routes, *custom, *dify_routes(), *openai_routes()]),
        capture=capture,
        redact=Redactor(builtin=capture.redact, patterns=capture.redact_patterns),
    )


def settings_problems(environ: Mapping[str, str] | None = None) -> list[str]:
    """The chat settings of `environ` (default: this process's) that are skipped, each
    with why and what chatspan does instead, for a health check to show; empty when
    every one was understood."""
    return _chat_settings(os.environ if environ is None else environ)[2]


def _chat_settings(
    environ: Mapping[str, str],
) -> tuple[CaptureSettings, list[ChatRoute], list[str]]:
    capture = CaptureSettings.from_env(environ)
    routes, route_problems = read_custom_routes(environ.get("CHATSPAN_CHAT_ROUTES", ""))
    return capture, routes, [*capture.problems, *route_problems]


# Hooks into the frameworks (and what the app calls while serving a chat), installed
# once per process for whichever of them is installed.
_HOOKS = (flask_hooks, starlette_hooks, threads, greenlets, dify_objects, model_calls)
_watched_providers: weakref.WeakSet[Any] = weakref.WeakSet()


def _install_hooks(tracer_provider: trace.TracerProvider | None) -> None:
    for hooks in _HOOKS:
        try:
            hooks.install()
        except ImportError:
            continue  # that framework is not installed
    # Spans the app's other instrumentations make inside a chat belong to it.
    provider = tracer_provider or trace.get_tracer_provider()
    if hasattr(provider, "add_span_processor") and provider not in _watched_providers:
        _watched_providers.add(provider)
        provider.add_span_processor(model_calls.SpansInsideChats())


def _uninstall_hooks() -> None:
    for hooks in _HOOKS:
        try:
            hooks.uninstall()
        except ImportError:
            continue
