"""Memory growth while a stream is consumed, for tests that promise bounded memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterable
from typing import TypeVar

Item = TypeVar("Item")


def peak_growth(
    items: Iterable[Item], warmup: int, consume: Callable[[Item], None] = lambda _item: None
) -> int:
    """Bytes the traced memory's peak rose above its level after the first `warmup`
    items, while the rest were consumed: what a stream costs beyond its start-up."""
    tracemalloc.start()
    try:
        baseline = None
        for index, item in enumerate(items, start=1):
            consume(item)
            if index == warmup:
                baseline, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
        assert baseline is not None, f"fewer than {warmup} items: nothing was measured"
        _current, peak = tracemalloc.get_traced_memory()
        return peak - baseline
    finally:
        tracemalloc.stop()
