"""Flask: chat spans for an app's chat routes, with or without OpenTelemetry's Flask
instrumentation.

Hooks installed on ``flask.app.Flask`` itself:

- ``__call__`` (the WSGI entry, always the outermost call) matches the route, reads a
  chat request's body once and hands the app an identical copy, and wraps the response
  iterable so the chat span ends with the last byte sent or with the client leaving;
- ``dispatch_request`` (after ``before_request``, so inside the server span) opens the
  chat span and makes it current while the view runs;
- ``handle_user_exception`` sees every exception a view raises, before the app's error
  handlers turn it into a response, and the ``got_request_exception`` signal those that
  Flask or an extension (flask-restx, which Dify uses) reports itself. Each exception
  is recorded once: on the chat span for a chat route, else on the current (server)
  span, else on a span of its own.

chatspan's work in each hook runs under a guard (see guard.py); the app's own calls
run outside it, so its exceptions reach it as they would without chatspan.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from opentelemetry import context as otel_context

from chatspan.instrumentation.activation import ACTIVATION
from chatspan.instrumentation.chat_call import ChatCall
from chatspan.instrumentation.guard import Guard
from chatspan.instrumentation.outside_chat import record_outside_chat
from chatspan.instrumentation.routing import RouteMatch
from chatspan.instrumentation.sse import DEFAULT_BATCH_BYTES
from chatspan.instrumentation.telemetry import ChatTelemetry

ENVIRON_KEY = "chatspan.chat_call"
_originals: dict[str, Any] = {}


def install() -> None:
    """Hook Flask (once per process)."""
    import flask  # noqa: PLC0415  (Flask is optional)
    from flask.app import Flask  # noqa: PLC0415

    if _originals:
        return
    for name, hook in _HOOKS.items():
        _originals[name] = getattr(Flask, name)
        setattr(Flask, name, hook)
    flask.got_request_exception.connect(_on_exception, weak=False)


def uninstall() -> None:
    import flask  # noqa: PLC0415
    from flask.app import Flask  # noqa: PLC0415

    if not _originals:
        return
    for name in _HOOKS:
        setattr(Flask, name, _originals.pop(name))
    flask.got_request_exception.disconnect(_on_exception)


# The places where chatspan's work runs inside the app's calls, each under its guard.
_IN_CALL = Guard("Flask.__call__")
_IN_DISPATCH = Guard("Flask.dispatch_request")
_IN_HANDLER = Guard("Flask.handle_user_exception")
_IN_SIGNAL = Guard("Flask's got_request_exception signal")
_IN_RELAY = Guard("the Flask response relay")
_AT_END = Guard("the end of a Flask response")


def _call(app: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    original = _originals["__call__"]
    route: tuple[ChatTelemetry, RouteMatch] | None = None
    chat: ChatCall | None = None
    with _IN_CALL:
        route = _chat_route(app, environ)
    if route is not None:
        telemetry, match = route
        # Outside the guard: reading the request's stream, the server's errors are the app's.
        body = _read_body_once(environ, telemetry.capture.max_request_bytes)
        with _IN_CALL:
            chat = _start_chat(environ, telemetry, match, body)
    if chat is None:
        return original(app, environ, start_response)

    def chat_start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        with _IN_CALL:
            content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
            chat.response_started(int(status.split(" ", 1)[0]), content_type)
        return start_response(status, headers, *exc_info)

    try:
        response = original(app, environ, chat_start_response)
    except BaseException as exception:
        with _IN_CALL:
            chat.record_exception(exception)
            chat.finish()
        raise
    return ChatResponseBody(response, chat)


def _chat_route(app: Any, environ: dict[str, Any]) -> tuple[ChatTelemetry, RouteMatch] | None:
    """The chat route a request of an instrumented app is for, if any."""
    telemetry = ACTIVATION.telemetry_for(app)
    if telemetry is None or ENVIRON_KEY in environ:
        return None
    match = telemetry.router.match(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
    return None if match is None else (telemetry, match)


def _start_chat(
    environ: dict[str, Any], telemetry: ChatTelemetry, match: RouteMatch, body: bytes | None
) -> ChatCall:
    chat = ChatCall(telemetry, match, environ.get("HTTP_AUTHORIZATION"))
    chat.read_request_body(body)
    environ[ENVIRON_KEY] = chat
    return chat


def _dispatch_request(app: Any) -> Any:
    import flask  # noqa: PLC0415

    original = _originals["dispatch_request"]
    token = None
    with _IN_DISPATCH:
        chat = flask.request.environ.get(ENVIRON_KEY)
        if chat is not None:
            token = otel_context.attach(chat.context)
    if token is None:
        return original(app)
    try:
        return original(app)
    finally:
        with _IN_DISPATCH:
            otel_context.detach(token)


def _handle_user_exception(app: Any, exception: Exception) -> Any:
    with _IN_HANDLER:
        _record(app, exception)
    return _originals["handle_user_exception"](app, exception)


def _on_exception(sender: Any, exception: BaseException, **_extra: Any) -> None:
    with _IN_SIGNAL:
        _record(sender, exception)


def _record(app: Any, exception: BaseException) -> None:
    """Record an exception raised while serving a request, once."""
    import flask  # noqa: PLC0415

    telemetry = ACTIVATION.telemetry_for(app)
    if telemetry is None or _is_http_exception(exception) or getattr(exception, _MARK, False):
        return
    # An exception class with __slots__ cannot be marked: it may be recorded twice, never lost.
    with contextlib.suppress(AttributeError):
        setattr(exception, _MARK, True)
    chat = flask.request.environ.get(ENVIRON_KEY)
    if chat is not None:
        chat.record_exception(exception)
        return
    rule = flask.request.url_rule
    route = rule.rule if rule is not None else flask.request.path
    record_outside_chat(telemetry, exception, flask.request.method, route)


_MARK = "_chatspan_recorded"
_HOOKS: dict[str, Callable[..., Any]] = {
    "__call__": _call,
    "dispatch_request": _dispatch_request,
    "handle_user_exception": _handle_user_exception,
}


class ChatResponseBody:
    """The app's response iterable, passed on untouched; the chat span ends with it.

    The chat span is current in this thread from the first chunk to the last (a
    streamed answer is generated while the server pulls chunks, so model calls made
    there belong to the chat). Each chunk is shown to the chat once it has gone to the
    server and before the next is pulled from the app, so looking at the answer never
    delays it: one by one until the stream's first answer piece (its time is the time
    to first token), then in runs of one SSE batch (``DEFAULT_BATCH_BYTES``), so a
    stream of many small events costs a list append per chunk. ``close()`` before the
    end means the client went away: the chat is then recorded as cancelled.
    """

    def __init__(self, body: Iterable[bytes], chat: ChatCall) -> None:
        self._body = body
        self._chat = chat
        self._chunks = self._relay()
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def _relay(self) -> Generator[bytes, None, None]:
        chat = self._chat
        token = None
        with _IN_RELAY:
            token = otel_context.attach(chat.context)
        sent: list[bytes] = []  # handed to the server, not yet shown to the chat
        size = 0
        try:
            for chunk in self._body:
                sent.append(chunk)
                size += len(chunk)
                yield chunk
                with _IN_RELAY:
                    if size < DEFAULT_BATCH_BYTES and not chat.reads_every_chunk:
                        continue
                run, sent, size = sent, [], 0
                with _IN_RELAY:
                    chat.body_chunks(run)
            self._done = True
        except Exception as exception:
            with _IN_RELAY:
                chat.record_exception(exception)
            raise
        finally:
            with _IN_RELAY:
                if sent:
                    chat.body_chunks(sent)
            if token is not None:
                with _IN_RELAY:
                    otel_context.detach(token)
            self._finish()

    def close(self) -> None:
        try:
            self._chunks.close()
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()

    def _finish(self) -> None:
        with _AT_END:
            self._chat.finish(cancelled=not self._done)


def _read_body_once(environ: dict[str, Any], limit: int) -> bytes | None:
    """Read a chat request's body and leave an identical copy for the app.

    None (not captured) when the body is larger than `limit` or of unknown length
    (chunked): then the app reads the original stream, untouched.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if length > limit or length < 0:
        return None
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _is_http_exception(exception: BaseException) -> bool:
    from werkzeug.exceptions import HTTPException  # noqa: PLC0415

    return isinstance(exception, HTTPException)
