"""Greenlets spawned while serving a chat carry its trace context.

Under gevent, threads the app starts are greenlets, and threads.py already hands them
the context. Greenlets spawned directly with
``gevent.spawn`` start with an empty context; this wraps ``gevent.spawn`` and
``gevent.spawn_later`` (gevent's Greenlet type itself cannot be changed) so that work
they do (a model call) is part of the chat's trace.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context

from chatspan.instrumentation.guard import Guard
from chatspan.instrumentation.threads import carrying_context

_originals: dict[str, Callable[..., Any]] = {}


def install() -> None:
    import gevent  # noqa: PLC0415  (gevent is optional)

    if _originals:
        return
    for name in ("spawn", "spawn_later"):
        original = getattr(gevent, name)
        _originals[name] = original
        setattr(gevent, name, _spawning_in_context(original, name == "spawn_later"))


def uninstall() -> None:
    import gevent  # noqa: PLC0415

    for name, original in _originals.items():
        setattr(gevent, name, original)
    _originals.clear()


def _spawning_in_context(spawn: Callable[..., Any], delayed: bool) -> Callable[..., Any]:
    @functools.wraps(spawn)
    def spawn_in_context(*args: Any, **kwargs: Any) -> Any:
        position = 1 if delayed else 0  # spawn_later(seconds, run, ...)
        with _IN_GREENLETS:
            run = carrying_context(args[position], otel_context.get_current(), _IN_GREENLETS)
            args = (*args[:position], run, *args[position + 1 :])
        return spawn(*args, **kwargs)

    return spawn_in_context


_IN_GREENLETS = Guard("the greenlets' context carrier")
