"""Background work that survives gevent's monkey-patching and forks.

Dify's api runs under gunicorn's gevent workers and patches the standard library at
import, after OpenTelemetry has started. Once `threading` is patched, a new
`threading.Thread` is a greenlet: started from a real thread (the span processor's),
it would wait forever for a hub that never runs; and a blocking call in a greenlet
(libpq waiting on a dead database) stops every request of the worker. So chatspan
starts its own background work on real OS threads, sleeps with the real `time.sleep`
there, and runs blocking database calls made from a greenlet in gevent's thread pool.
Without gevent, these are the ordinary calls.

Those threads wait on a :class:`Wakeup`, made of a native lock, never on gevent's
locks or events (what `threading` hands out after the patch). Those belong to the hub
of the thread that first used them; shared between a thread without a hub and that
hub's greenlets, they lose wake-ups (gevent before 26.8 leaves a greenlet waiting for
a lock such a thread released) and race with the hub's own notifications (gevent's
"AssertionError: (None, <callback ...>)" from `_notify_links`).

One more thing goes wrong only at exit: `opentelemetry-instrument` imports Flask before
the app patches, so Flask's module-level log handler is finalized after gevent's
thread module, and its clean-up takes logging's (patched) lock, which then needs a
gevent that is gone: "Exception ignored in _removeHandlerRef" in every worker's log.
`use_native_logging_lock_at_exit` hands logging a native lock for that last moment.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

Result = TypeVar("Result")


def gevent_patched() -> bool:
    """Whether gevent has monkey-patched `threading` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def start_thread(target: Callable[[], None], name: str) -> None:
    """Run `target` on a real OS thread, patched or not."""
    if gevent_patched():
        from gevent import monkey  # noqa: PLC0415

        monkey.get_original("_thread", "start_new_thread")(target, ())
        return
    threading.Thread(target=target, name=name, daemon=True).start()


def sleep(seconds: float) -> None:
    """Sleep the calling OS thread (not a greenlet's turn)."""
    if gevent_patched():
        from gevent import monkey  # noqa: PLC0415

        monkey.get_original("time", "sleep")(seconds)
        return
    time.sleep(seconds)


class Wakeup:
    """A signal that a real OS thread waits on and any thread or greenlet gives.

    A native lock used as a binary semaphore (held: not given), the same with or
    without gevent: `set` never blocks nor switches greenlets, so the hub may call it
    while serving a request; `wait` blocks only the thread that waits, with a timeout.
    A signal given before the wait is not lost: the next wait returns at once.
    """

    def __init__(self) -> None:
        self._lock = _native_lock()
        self._lock.acquire()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # given already, not taken yet
            self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the signal is given (True; it is taken) or `timeout` seconds pass."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=min(max(timeout, 0.0), _thread.TIMEOUT_MAX))


def run_blocking(function: Callable[..., Result], *args: Any) -> Result:
    """Call `function`, off the gevent hub's thread when called from one of its greenlets."""
    if gevent_patched() and _on_a_running_hub():
        import gevent  # noqa: PLC0415

        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)


def use_native_logging_lock_at_exit() -> None:
    """At exit, if gevent has patched this process, give `logging` a native lock.

    Interpreter finalization is single-threaded, so the native lock serves the
    handler clean-up that runs after gevent's own modules are torn down.
    """
    atexit.register(_swap_logging_lock)


def _swap_logging_lock() -> None:
    if gevent_patched():
        from gevent import monkey  # noqa: PLC0415

        logging._lock = monkey.get_original("_thread", "RLock")()


def _native_lock() -> _thread.LockType:
    if gevent_patched():
        from gevent import monkey  # noqa: PLC0415

        return monkey.get_original("_thread", "allocate_lock")()
    return _thread.allocate_lock()


def _on_a_running_hub() -> bool:
    from gevent._hub_local import get_hub_if_exists  # noqa: PLC0415

    hub = get_hub_if_exists()
    return hub is not None and not hub.dead and _current_greenlet() is not hub


def _current_greenlet() -> Any:
    import gevent  # noqa: PLC0415

    return gevent.getcurrent()
