"""Starlette and FastAPI: chat spans for an app's chat routes, with or without
OpenTelemetry's FastAPI/ASGI instrumentation.

``Starlette.__call__`` is hooked to add :class:`ChatMiddleware` as the first user
middleware before the app builds its middleware stack. User middleware runs inside
Starlette's error handling and inside OpenTelemetry's server middleware, so the chat
span is a child of the server span and sees the view's exceptions first.

chatspan's work in each hook runs under a guard (see guard.py); the app's own calls
run outside it, so its exceptions reach it as they would without chatspan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context

from chatspan.instrumentation.activation import ACTIVATION
from chatspan.instrumentation.chat_call import ChatCall
from chatspan.instrumentation.guard import Guard
from chatspan.instrumentation.outside_chat import record_outside_chat
from chatspan.instrumentation.routing import RouteMatch
from chatspan.instrumentation.telemetry import ChatTelemetry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SCOPE_KEY = "chatspan.chat_call"
_originals: dict[str, Any] = {}


def install() -> None:
    """Hook Starlette (once per process)."""
    from starlette.applications import Starlette  # noqa: PLC0415  (Starlette is optional)

    if _originals:
        return
    _originals["__call__"] = Starlette.__call__
    setattr(Starlette, "__call__", _call)  # noqa: B010  (a method, replaced)


def uninstall() -> None:
    from starlette.applications import Starlette  # noqa: PLC0415

    if _originals:
        setattr(Starlette, "__call__", _originals.pop("__call__"))  # noqa: B010


def add_middleware(app: Any) -> None:
    """Put ChatMiddleware first in the app's user middleware (just inside OpenTelemetry's
    server middleware, which older FastAPI instrumentations add there too), and rebuild
    its stack."""
    from starlette.middleware import Middleware  # noqa: PLC0415

    middleware = app.user_middleware
    if any(m.cls is ChatMiddleware for m in middleware):
        return
    inside_server_span = next(
        (i + 1 for i, m in enumerate(middleware) if m.cls.__name__ == "OpenTelemetryMiddleware"),
        0,
    )
    middleware.insert(inside_server_span, Middleware(ChatMiddleware))
    app.middleware_stack = None


# The places where chatspan's work runs inside the app's calls, each under its guard.
_IN_CALL = Guard("Starlette.__call__")
_IN_MIDDLEWARE = Guard("ChatMiddleware")
_IN_SEND = Guard("ChatMiddleware's response relay")


async def _call(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    with _IN_CALL:
        if app.middleware_stack is None and ACTIVATION.telemetry_for(app) is not None:
            add_middleware(app)
    await _originals["__call__"](app, scope, receive, send)


class ChatMiddleware:
    """ASGI middleware that turns a chat request into a chat span."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: tuple[ChatTelemetry, RouteMatch | None] | None = None
        with _IN_MIDDLEWARE:
            route = _chat_route(scope)
        if route is None:
            return await self.app(scope, receive, send)
        telemetry, match = route
        if match is None:
            try:
                return await self.app(scope, receive, send)
            except Exception as exception:
                with _IN_MIDDLEWARE:
                    path = getattr(scope.get("route"), "path", None) or scope["path"]
                    record_outside_chat(telemetry, exception, scope["method"], str(path))
                raise

        headers: dict[bytes, bytes] = {}
        with _IN_MIDDLEWARE:
            headers = {k.lower(): v for k, v in scope.get("headers", ()) if k.lower() in _WANTED}
        # Outside the guard: receiving the request's messages, the server's errors are the app's.
        body, receive = await _read_body_once(
            receive, headers.get(b"content-length"), telemetry.capture.max_request_bytes
        )
        chat: ChatCall | None = None
        with _IN_MIDDLEWARE:
            chat = _start_chat(scope, telemetry, match, headers.get(b"authorization"), body)
        if chat is None:
            return await self.app(scope, receive, send)
        await self._serve_chat(chat, scope, receive, send)
        return None

    async def _serve_chat(self, chat: ChatCall, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False

        async def chat_send(message: Message) -> None:
            nonlocal completed
            kind = message["type"]
            if kind == "http.response.start":
                with _IN_SEND:
                    content_type = next(
                        (v for k, v in message.get("headers", ()) if k.lower() == b"content-type"),
                        None,
                    )
                    chat.response_started(
                        message["status"], content_type.decode("latin-1") if content_type else None
                    )
            await send(message)
            if kind == "http.response.body":
                body = message.get("body", b"")
                if body:
                    with _IN_SEND:
                        chat.body_chunks((body,))
                if not message.get("more_body", False):
                    completed = True

        failed = False
        token = None
        with _IN_MIDDLEWARE:
            token = otel_context.attach(chat.context)
        try:
            await self.app(scope, receive, chat_send)
        except (asyncio.CancelledError, OSError):
            raise  # the client went away: cancelled, not an error
        except Exception as exception:
            if type(exception).__name__ != "ClientDisconnect":
                failed = True
                with _IN_MIDDLEWARE:
                    chat.record_exception(exception)
            raise
        finally:
            if token is not None:
                with _IN_MIDDLEWARE:
                    otel_context.detach(token)
            with _IN_MIDDLEWARE:
                chat.finish(cancelled=not completed and not failed)


def _chat_route(scope: Scope) -> tuple[ChatTelemetry, RouteMatch | None] | None:
    """For an HTTP request to an instrumented app: its telemetry, and its chat route if
    it is a chat (None: chatspan leaves the request alone)."""
    if scope["type"] != "http" or SCOPE_KEY in scope:
        return None
    telemetry = ACTIVATION.telemetry_for(scope.get("app"))
    if telemetry is None:
        return None
    return telemetry, telemetry.router.match(scope["method"], scope["path"])


def _start_chat(
    scope: Scope,
    telemetry: ChatTelemetry,
    match: RouteMatch,
    authorization: bytes | None,
    body: bytes | None,
) -> ChatCall:
    chat = ChatCall(telemetry, match, authorization.decode("latin-1") if authorization else None)
    chat.read_request_body(body)
    scope[SCOPE_KEY] = chat
    return chat


_WANTED = {b"authorization", b"content-length"}


async def _read_body_once(
    receive: Receive, content_length: bytes | None, limit: int
) -> tuple[bytes | None, Receive]:
    """Read a chat request's body, and a `receive` that replays it to the app unchanged.

    None (not captured) when the body is larger than `limit` or of unknown length: the
    app then receives the original messages, untouched.
    """
    try:
        length = int(content_length or b"")
    except ValueError:
        return None, receive
    if length > limit or length < 0:
        return None, receive
    buffered: list[Message] = []
    while True:
        message = await receive()
        buffered.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    complete = buffered[-1]["type"] == "http.request"
    body = b"".join(m.get("body", b"") for m in buffered if m["type"] == "http.request")

    async def replay() -> Message:
        if buffered:
            return buffered.pop(0)
        return await receive()

    return (body if complete else None), replay
