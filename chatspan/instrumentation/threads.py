"""Threads started while serving a request carry its trace context.

Dify generates each answer in a thread it starts per request, and calls the model from
there: without the request's context that thread's spans start traces of their own, and
the chat cannot learn which model it called. OpenTelemetry's contrib package for this
(opentelemetry-instrumentation-threading) is released in lockstep with
opentelemetry-instrumentation, so depending on it would move the version an app has
pinned (Dify pins 0.50b0 or 0.61b0); chatspan therefore carries the context itself, the
same way: ``Thread.start`` notes the starting thread's context, ``Thread.run`` attaches
it, and ``ThreadPoolExecutor.submit`` wraps the task. Under gevent, threads are
greenlets and this covers them too (``gevent.spawn`` is in greenlets.py).
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context

from chatspan.instrumentation.guard import Guard

_CONTEXT_ATTRIBUTE = "_chatspan_context"
_originals: dict[tuple[type, str], Callable[..., Any]] = {}


def install() -> None:
    if _originals:
        return
    _replace(threading.Thread, "start", _start)
    _replace(threading.Thread, "run", _run)
    _replace(concurrent.futures.ThreadPoolExecutor, "submit", _submit)


def uninstall() -> None:
    while _originals:
        (owner, name), original = _originals.popitem()
        setattr(owner, name, original)


def _replace(owner: type, name: str, wrapper: Callable[..., Any]) -> None:
    original = _originals[(owner, name)] = getattr(owner, name)

    @functools.wraps(original)
    def replaced(self: Any, *args: Any, **kwargs: Any) -> Any:
        return wrapper(original, self, *args, **kwargs)

    setattr(owner, name, replaced)


def _start(original: Callable[..., Any], thread: threading.Thread) -> None:
    with _IN_THREADS:
        setattr(thread, _CONTEXT_ATTRIBUTE, otel_context.get_current())
    original(thread)


def _run(original: Callable[..., Any], thread: threading.Thread) -> None:
    context = None
    with _IN_THREADS:
        context = getattr(thread, _CONTEXT_ATTRIBUTE, None)
    if context is None:
        original(thread)
        return
    run_in(context, _IN_THREADS, original, thread)


def _submit(
    original: Callable[..., Any],
    executor: concurrent.futures.ThreadPoolExecutor,
    function: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> concurrent.futures.Future[Any]:
    task = function
    with _IN_THREADS:
        task = carrying_context(function, otel_context.get_current(), _IN_THREADS)
    return original(executor, task, *args, **kwargs)


def carrying_context(
    function: Callable[..., Any], context: otel_context.Context, guard: Guard
) -> Callable[..., Any]:
    """`function`, to be run in `context` wherever it is called."""

    @functools.wraps(function)
    def in_context(*args: Any, **kwargs: Any) -> Any:
        return run_in(context, guard, function, *args, **kwargs)

    return in_context


def run_in(
    context: otel_context.Context,
    guard: Guard,
    function: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Call `function` with `context` attached; attaching it is chatspan's work, under
    `guard`, and the call is the app's."""
    token = None
    with guard:
        token = otel_context.attach(context)
    try:
        return function(*args, **kwargs)
    finally:
        if token is not None:
            with guard:
                otel_context.detach(token)


_IN_THREADS = Guard("the threads' context carrier")
