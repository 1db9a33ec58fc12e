"""One guard between chatspan's hooks and the app: a bug of ours never reaches a request.

Every hook body that runs inside the app's own calls (framework hooks, ORM events, HTTP
client wrappers) runs under :func:`swallowing`: an exception of chatspan's is logged
once per place, with its traceback, and the app carries on as if chatspan were not
there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

_logger = logging.getLogger("chatspan")
_reported: set[str] = set()


@contextlib.contextmanager
def swallowing(where: str) -> Iterator[None]:
    """Run a block of chatspan's work; log its first failure here, never raise it."""
    try:
        yield
    except Exception:
        if where not in _reported:
            _reported.add(where)
            _logger.exception("chatspan: internal error in %s (the app is unaffected)", where)
