"""Which apps chatspan instruments, and with what settings.

The framework hooks are installed once per process on the framework classes, so they
apply in any load order and to apps created before or after instrumentation; each hook
then asks :data:`ACTIVATION` whether the app at hand is instrumented.
"""

from __future__ import annotations

import weakref
from typing import Any

from chatspan.instrumentation.telemetry import ChatTelemetry


class Activation:
    """Every app (``ChatInstrumentor().instrument()``) or chosen apps (``instrument_app``)."""

    def __init__(self) -> None:
        self._every_app: ChatTelemetry | None = None
        self._apps: weakref.WeakKeyDictionary[Any, ChatTelemetry] = weakref.WeakKeyDictionary()

    def enable_everywhere(self, telemetry: ChatTelemetry) -> None:
        self._every_app = telemetry

    def disable_everywhere(self) -> None:
        self._every_app = None

    def enable_for(self, app: Any, telemetry: ChatTelemetry) -> None:
        self._apps[app] = telemetry

    def disable_for(self, app: Any) -> None:
        self._apps.pop(app, None)

    def telemetry_for(self, app: Any) -> ChatTelemetry | None:
        """The settings for `app`, or None when chatspan leaves it alone."""
        if self._apps:
            try:
                telemetry = self._apps.get(app)
            except TypeError:  # not weak-referenceable: cannot have been chosen
                telemetry = None
            if telemetry is not None:
                return telemetry
        return self._every_app

    @property
    def active(self) -> bool:
        return self._every_app is not None or bool(self._apps)


ACTIVATION = Activation()
