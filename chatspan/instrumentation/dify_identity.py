"""Which app and which user a Dify chat belongs to, as Dify itself knows them.

Dify names the app of a chat differently on each road in: the service API by its app
key, the web app by its passport (a JWT whose claims name the app and the end user),
the console debugger by the app id in its path (and the account in the console token).
Rows must carry Dify's app UUID whatever the road, so:

- Inside Dify's process the app, the end user and the message are the objects Dify's
  own request handling loads or creates for the request (its auth decorators load the
  ``apps`` and ``end_users`` rows; the chat creates a ``messages`` row naming the model).
  SQLAlchemy's ORM events hand them to the chat current in that context: nothing is
  queried by chatspan, and nothing happens outside a chat.
- Tokens are read as labels only (their claims, unverified): Dify verifies them, and a
  request it refuses is no chat.
- The app key's SHA-256 digest names the app only when nothing else does.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from chatspan.instrumentation.chat_context import current_chat
from chatspan.instrumentation.guard import swallowing

WEB_APP_PASSPORT = "Web API Passport"  # the `sub` of a Dify web-app passport
CONSOLE_PASSPORT = "Console API Passport"  # the `sub` of a Dify console login token


def bearer_claims(authorization: str | None) -> Mapping[str, Any]:
    """The claims of a bearer JWT, unverified (labels only); empty when there is none."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


@functools.lru_cache(maxsize=256)
def app_key_digest(authorization: str | None) -> str | None:
    """A stable, non-secret name for the app behind a Dify app key (``key-`` + digest).

    The key itself must never be stored; a short SHA-256 digest tells apps apart without
    revealing anything. A process serves a handful of keys, so each digest is computed
    once and remembered (in memory only, beside the copies the app itself holds).
    """
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip().startswith("app-"):
        return None
    return "key-" + hashlib.sha256(token.strip().encode()).hexdigest()[:16]


# -- Dify's own objects ---------------------------------------------------------------


def _app_loaded(app: Any) -> None:
    chat = current_chat()
    if chat is not None:
        chat.learn_app(_text(getattr(app, "id", None)), _text(getattr(app, "name", None)))


def _end_user_loaded(end_user: Any) -> None:
    chat = current_chat()
    if chat is not None:
        chat.learn_end_user(
            _text(getattr(end_user, "session_id", None)), _text(getattr(end_user, "app_id", None))
        )


def _message_created(message: Any, kwargs: Mapping[str, Any]) -> None:
    chat = current_chat()
    if chat is not None:
        model = kwargs.get("model_id")
        if model:
            chat.learn_model(_text(model), _text(kwargs.get("model_provider")), source="dify")


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
    handler = _ON_LOAD.get(_table_of(type(target)))  # a dict look-up for any other table
    if handler is not None:
        with swallowing("dify_identity._on_load"):
            handler(target)


def _on_init(target: Any, _args: Any, kwargs: Mapping[str, Any]) -> None:
    handler = _ON_INIT.get(_table_of(type(target)))
    if handler is not None:
        with swallowing("dify_identity._on_init"):
            handler(target, kwargs)


@functools.lru_cache(maxsize=1024)
def _table_of(cls: type) -> str:
    table = getattr(cls, "__tablename__", None)
    return table if isinstance(table, str) else ""


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
