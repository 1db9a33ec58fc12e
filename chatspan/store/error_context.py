"""Errors whose chat is stored in another batch still take the chat's context.

A chat's trace reaches the writer in pieces: the model call's span (and its error) ends
before the chat span and may be exported in an earlier batch, and an error can also
come after its chat. Within a batch the mapping joins them
(:func:`chatspan.records.join_errors_to_chats`); across batches, this does:

- an error whose chat is already stored takes its context before it is written (one
  indexed look-up by trace id, only for batches that hold such errors: errors are few);
- an error whose chat has not come yet is remembered by trace id (in memory, bounded:
  the oldest are forgotten first), and updated when the chat is written (again if the
  chat comes again: the update changes nothing the second time).

Both happen in the batch's own transaction. The memory is per process: a chat and its
error that reach two different processes (two ingest replicas) are not joined.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, or_, select, update

from chatspan import semconv as sc
from chatspan.records import ChatRecord, ErrorRecord, take_chat_context
from chatspan.store.tables import dify_logs, error

MAX_WAITING_TRACES = 10_000  # errors waiting for a chat that never comes are forgotten


class ErrorContextJoin:
    """Joins errors to chats across batches, for one writer."""

    def __init__(self, capacity: int = MAX_WAITING_TRACES) -> None:
        self._waiting: OrderedDict[str, list[str]] = OrderedDict()  # trace id -> error ids
        self._capacity = capacity
        self._lock = threading.Lock()

    def before_errors(self, connection: Connection, errors: list[ErrorRecord]) -> None:
        """`errors` (whose chat is not in their batch) take a stored chat's context, or
        wait for their chat."""
        if not errors:
            return
        traces = {e.trace_id for e in errors}
        columns = [dify_logs.c[name] for name in _CONTEXT_COLUMNS]
        stored = {
            row.trace_id: row
            for row in connection.execute(select(*columns).where(dify_logs.c.trace_id.in_(traces)))
        }
        with self._lock:
            for found in errors:
                chat = stored.get(found.trace_id)
                if chat is not None:
                    take_chat_context(found, chat)
                else:
                    self._waiting.setdefault(found.trace_id, []).append(found.id)
                    self._waiting.move_to_end(found.trace_id)
            while len(self._waiting) > self._capacity:
                self._waiting.popitem(last=False)

    def after_chats(self, connection: Connection, chats: list[ChatRecord]) -> None:
        """Errors stored earlier that waited for one of `chats` take its context."""
        if not self._waiting:
            return
        with self._lock:  # kept, not popped: a batch rolled back is written again
            due = [
                (chat, list(self._waiting[chat.trace_id]))
                for chat in chats
                if chat.trace_id in self._waiting
            ]
        for chat, ids in due:
            values: dict[str, ColumnElement[Any]] = {
                name: func.coalesce(error.c[name], getattr(chat, name))
                for name in ("user_id", "app_id", "conversation_id", "route")
            }
            if chat.status == sc.STATUS_OK:  # the app recovered from what failed inside
                values["handled"] = or_(error.c.handled, error.c.span_id != chat.span_id)
            connection.execute(update(error).where(error.c.id.in_(ids)).values(values))


_CONTEXT_COLUMNS = (
    "trace_id",
    "span_id",
    "user_id",
    "app_id",
    "conversation_id",
    "route",
    "status",
)
