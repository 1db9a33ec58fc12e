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
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry import context as otel_context

from chatspan.instrumentation.activation import ACTIVATION
from chatspan.instrumentation.chat_call import ChatCall
from chatspan.instrumentation.outside_chat import record_outside_chat
from chatspan.instrumentation.sse import DEFAULT_BATCH_BYTES

ENVIRON_KEY = "chatspan.chat_call"
_originals: dict[str, Any] = {}


def install() -> None:
    """Hook Flask (once per process)."""
    import flask  # noqa: PLC0415  (Flask is optional)
    from flask.app import Flask  # noqa: PLC0415

    if _originals:
        return
    _originals["__call__"] = Flask.__call__
    _originals["dispatch_request"] = Flask.dispatch_request
    _originals["handle_user_exception"] = Flask.handle_user_exception
    Flask.__call__ = _call
    Flask.dispatch_request = _dispatch_request
    Flask.handle_user_exception = _handle_user_exception
    flask.got_request_exception.connect(_on_exception, weak=False)


def uninstall() -> None:
    import flask  # noqa: PLC0415
    from flask.app import Flask  # noqa: PLC0415

    if not _originals:
        return
    Flask.__call__ = _originals.pop("__call__")
    Flask.dispatch_request = _originals.pop("dispatch_request")
    Flask.handle_user_exception = _originals.pop("handle_user_exception")
    flask.got_request_exception.disconnect(_on_exception)


def _call(app: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    original = _originals["__call__"]
    telemetry = ACTIVATION.telemetry_for(app)
    if telemetry is None or ENVIRON_KEY in environ:
        return original(app, environ, start_response)
    match = telemetry.router.match(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
    if match is None:
        return original(app, environ, start_response)

    chat = ChatCall(telemetry, match, environ.get("HTTP_AUTHORIZATION"))
    chat.read_request_body(_read_body_once(environ, telemetry.capture.max_request_bytes))
    environ[ENVIRON_KEY] = chat

    def chat_start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
        chat.response_started(int(status.split(" ", 1)[0]), content_type)
        return start_response(status, headers, *exc_info)

    try:
        body = original(app, environ, chat_start_response)
    except BaseException as exception:
        chat.record_exception(exception)
        chat.finish()
        raise
    return ChatResponseBody(body, chat)


def _dispatch_request(app: Any) -> Any:
    import flask  # noqa: PLC0415

    original = _originals["dispatch_request"]
    chat = flask.request.environ.get(ENVIRON_KEY)
    if chat is None:
        return original(app)
    token = otel_context.attach(chat.context)
    try:
        return original(app)
    finally:
        otel_context.detach(token)


def _handle_user_exception(app: Any, exception: Exception) -> Any:
    _record(app, exception)
    return _originals["handle_user_exception"](app, exception)


def _on_exception(sender: Any, exception: BaseException, **_extra: Any) -> None:
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

    def _relay(self) -> Iterator[bytes]:
        chat = self._chat
        token = otel_context.attach(chat.context)
        sent: list[bytes] = []  # handed to the server, not yet shown to the chat
        size = 0
        try:
            for chunk in self._body:
                sent.append(chunk)
                size += len(chunk)
                yield chunk
                if size >= DEFAULT_BATCH_BYTES or chat.reads_every_chunk:
                    chat.body_chunks(sent)
                    sent.clear()
                    size = 0
            self._done = True
        except Exception as exception:
            chat.record_exception(exception)
            raise
        finally:
            if sent:
                chat.body_chunks(sent)
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
