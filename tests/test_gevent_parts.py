"""The parts that make chatspan work under gevent, each on its own.

Greenlets spawned while serving a chat carry its trace context; in a monkey-patched
process (a subprocess here, since patching cannot be undone), chatspan's background
work runs on real OS threads and a blocking call made from a greenlet leaves the other
greenlets running."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import gevent
import pytest

from chatspan.instrumentation import greenlets

from spans import SpanRecorder


@pytest.fixture
def recorder():
    return SpanRecorder()


@pytest.fixture
def hooked():
    greenlets.install()
    yield
    greenlets.uninstall()


def _model_call_parent(recorder: SpanRecorder, spawn) -> object:
    tracer = recorder.tracer

    def model_call() -> None:
        with tracer.start_as_current_span("model call"):
            pass

    with tracer.start_as_current_span("chat"):
        spawn(model_call).join()
    spans = {span.name: span for span in recorder.spans()}
    parent = spans["model call"].parent
    return parent and parent.span_id == spans["chat"].context.span_id


def test_a_spawned_greenlet_is_below_the_chat_span(recorder, hooked):
    assert _model_call_parent(recorder, gevent.spawn)


def test_a_greenlet_spawned_later_is_below_the_chat_span(recorder, hooked):
    assert _model_call_parent(recorder, lambda run: gevent.spawn_later(0.01, run))


def test_without_the_hook_a_greenlet_starts_a_trace_of_its_own(recorder):
    """The control: what the hook changes."""
    assert not _model_call_parent(recorder, gevent.spawn)


def test_uninstall_gives_back_gevents_own_spawn(recorder):
    own_spawn, own_spawn_later = gevent.spawn, gevent.spawn_later
    greenlets.install()
    assert gevent.spawn is not own_spawn
    greenlets.uninstall()
    assert (gevent.spawn, gevent.spawn_later) == (own_spawn, own_spawn_later)
    assert not _model_call_parent(recorder, gevent.spawn)  # the context is no longer carried


PATCHED_PROCESS = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()

    import json
    import gevent
    from chatspan import concurrency

    real_ident = monkey.get_original("_thread", "get_ident")
    real_sleep = monkey.get_original("time", "sleep")
    result = {"patched": concurrency.gevent_patched(), "main": real_ident()}

    def background() -> None:
        result["thread"] = real_ident()
        concurrency.sleep(0.05)
        result["thread_slept"] = True

    concurrency.start_thread(background, "test")
    wakeup, woken = concurrency.Wakeup(), concurrency.Wakeup()

    def waiter() -> None:
        result["thread_woken"] = wakeup.wait(30)
        woken.set()

    concurrency.start_thread(waiter, "waiter")
    ticks = []

    def ticker() -> None:
        while True:
            ticks.append(1)
            gevent.sleep(0.01)

    gevent.spawn(ticker)
    gevent.sleep(0.05)
    result["ticks_while_a_thread_waits"] = len(ticks)
    gevent.spawn(wakeup.set).join()  # a greenlet wakes the real thread
    result["thread_woke_in_time"] = woken.wait(10)
    before = len(ticks)
    gevent.spawn(concurrency.run_blocking, real_sleep, 0.4).join()
    result["ticks_during_run_blocking"] = len(ticks) - before
    before = len(ticks)
    gevent.spawn(real_sleep, 0.4).join()
    result["ticks_during_a_bare_blocking_call"] = len(ticks) - before
    print(json.dumps(result))
    """
)


def test_in_a_patched_process_background_work_runs_on_a_real_thread_and_blocking_calls_yield():
    done = subprocess.run(
        [sys.executable, "-c", PATCHED_PROCESS],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["patched"] is True
    assert result["thread"] != result["main"]  # an OS thread, not a greenlet of the main one
    assert result["thread_slept"] is True
    assert result["ticks_while_a_thread_waits"] >= 3  # its wait does not hold the hub
    assert result["thread_woke_in_time"] is True
    assert result["thread_woken"] is True
    assert result["ticks_during_run_blocking"] >= 10  # the hub kept serving
    assert result["ticks_during_a_bare_blocking_call"] <= 1  # the control: it does not
