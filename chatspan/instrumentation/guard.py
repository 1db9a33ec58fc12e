"""One guard between chatspan's hooks and the app: a bug of ours never reaches a request.

Every hook body that runs inside the app's own calls (framework hooks, the response
relay, ORM events, HTTP client wrappers, the context carriers of threads and
greenlets, the span processor watching spans inside chats) runs its own work under a
:class:`Guard` named for its place: an exception of chatspan's is logged once per
place, with its traceback, and the app carries on as if chatspan were not there. The
app's own calls stay outside every guard, so the app's exceptions reach it unchanged.

A guard is made once per place, at import, and entered per call: it keeps no state
of a call, so threads and greenlets share it, and entering it costs two method calls.
"""

from __future__ import annotations

import logging
from types import TracebackType

_logger = logging.getLogger("chatspan")
_reported: set[str] = set()


class Guard:
    """``with guard:`` runs a block of chatspan's work; its first failure at this
    place is logged, and no failure is raised."""

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if kind is None or not issubclass(kind, Exception):
            return False  # nothing went wrong, or the process is told to stop: not ours
        if self.where not in _reported:
            _reported.add(self.where)
            _logger.error(
                "chatspan: internal error in %s (the app is unaffected)",
                self.where,
                exc_info=error,
            )
        return True
