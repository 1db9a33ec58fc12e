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

_originals: dict[str, Callable[..., Any]] = {}


def install() -> None:
    import gevent  # noqa: PLC0415  (gevent is optional)

    if _originals:
        return
    for name in ("spawn", "spawn_later"):
        original = getattr(gevent, name)
        _originals[name] = original
        setattr(gevent, name, _carrying_context(original, name == "spawn_later"))


def uninstall() -> None:
    import gevent  # noqa: PLC0415

    for name, original in _originals.items():
        setattr(gevent, name, original)
    _originals.clear()


def _carrying_context(spawn: Callable[..., Any], delayed: bool) -> Callable[..., Any]:
    @functools.wraps(spawn)
    def spawn_in_context(*args: Any, **kwargs: Any) -> Any:
        position = 1 if delayed else 0  # spawn_later(seconds, run, ...)
        run = args[position]
        context = otel_context.get_current()

        @functools.wraps(run)
        def run_in_context(*run_args: Any, **run_kwargs: Any) -> Any:
            token = otel_context.attach(context)
            try:
                return run(*run_args, **run_kwargs)
            finally:
                otel_context.detach(token)

        return spawn(*args[:position], run_in_context, *args[position + 1 :], **kwargs)

    return spawn_in_context
