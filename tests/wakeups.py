"""How often the OS has woken a thread: what an idle background thread should not do."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="counts wake-ups in /proc"
)


def thread_named(name: str) -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    return thread


def wakeups(thread: threading.Thread) -> int:
    """The thread's voluntary context switches so far: each sleep that ended is one."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])
