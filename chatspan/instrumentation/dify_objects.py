"""Which app, user and model a Dify chat belongs to, as Dify's own objects say.

Inside Dify's process the app, the end user and the message are the objects Dify's own
request handling loads or creates for the request (its auth decorators load the ``apps``
and ``end_users`` rows; the chat creates a ``messages`` row naming the model).
SQLAlchemy's ORM events hand them to the chat current in that context: nothing is
queried by chatspan, and nothing happens outside a chat. They refine what the chat's
credential said (see ``shapes.dify_identity``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from chatspan.instrumentation.chat_context import current_chat
from chatspan.instrumentation.facts import text_or_none
from chatspan.instrumentation.guard import Guard


def _app_loaded(app: Any) -> None:
    chat = current_chat()
    if chat is not None:
        chat.learn_app(
            text_or_none(getattr(app, "id", None)), text_or_none(getattr(app, "name", None))
        )


def _end_user_loaded(end_user: Any) -> None:
    chat = current_chat()
    if chat is not None:
        chat.learn_end_user(
            text_or_none(getattr(end_user, "session_id", None)),
            text_or_none(getattr(end_user, "app_id", None)),
        )


def _message_created(message: Any, kwargs: Mapping[str, Any]) -> None:
    chat = current_chat()
    if chat is not None:
        model = kwargs.get("model_id")
        if model:
            chat.learn_model(
                text_or_none(model), text_or_none(kwargs.get("model_provider")), source="dify"
            )


# Dify's tables whose rows say who asks and what is called.
_ON_LOAD: dict[str, Callable[[Any], None]] = {"apps": _app_loaded, "end_users": _end_user_loaded}
_ON_INIT: dict[str, Callable[[Any, Mapping[str, Any]], None]] = {"messages": _message_created}
_installed: list[tuple[str, Callable[..., None]]] = []


def install() -> None:
    """Listen to every ORM class's loads and constructions (once per process).

    A listener on SQLAlchemy's Mapper covers classes mapped before and after; it costs
    a dictionary lookup per ORM object, and acts only on Dify's three tables.
    """
    from sqlalchemy import event  # noqa: PLC0415
    from sqlalchemy.orm import Mapper  # noqa: PLC0415

    if _installed:
        return
    for name, listener in (("load", _on_load), ("init", _on_init)):
        event.listen(Mapper, name, listener)
        _installed.append((name, listener))


def uninstall() -> None:
    from sqlalchemy import event  # noqa: PLC0415
    from sqlalchemy.orm import Mapper  # noqa: PLC0415

    while _installed:
        name, listener = _installed.pop()
        event.remove(Mapper, name, listener)


def _on_load(target: Any, _context: Any) -> None:
    with _ON_LOAD_GUARD:
        handler = _ON_LOAD.get(_table_of(target.__class__))  # a dict look-up for any other table
        if handler is not None:
            handler(target)


def _on_init(target: Any, _args: Any, kwargs: Mapping[str, Any]) -> None:
    with _ON_INIT_GUARD:
        handler = _ON_INIT.get(_table_of(target.__class__))
        if handler is not None:
            handler(target, kwargs)


_ON_LOAD_GUARD = Guard("the ORM's load event")
_ON_INIT_GUARD = Guard("the ORM's init event")


@functools.lru_cache(maxsize=1024)
def _table_of(cls: type) -> str:
    table = getattr(cls, "__tablename__", None)
    return table if isinstance(table, str) else ""
