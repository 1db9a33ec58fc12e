"""The model a chat called, learned from inside the chat.

A chat app's answer says nothing of its model (Dify's never does): the app calls the
model provider while serving the chat, from the request's thread or from worker threads
and greenlets that carry the chat's context. chatspan learns the model from three
sources, the best one that spoke winning:

1. ``dify``: Dify's own message record, created for the chat with the model and provider
   the app is configured with (see :mod:`chatspan.instrumentation.dify_objects`);
2. ``span``: a GenAI span in the chat's trace, as OpenTelemetry's GenAI instrumentations
   and OpenInference's write them (``gen_ai.request.model``, ``llm.model_name``, ...);
3. ``http``: the body of a call to a model API made with httpx or requests while the chat
   is current: OpenAI-compatible (``model``), Anthropic (``model``), or Dify's plugin
   daemon (``data.model`` and ``data.provider``).

Within a source the first model called wins.
"""

from __future__ import annotations

import functools
import inspect
import json
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from chatspan import semconv as sc
from chatspan.instrumentation.chat_context import CHAT_CALL_KEY, current_chat
from chatspan.instrumentation.guard import Guard

if TYPE_CHECKING:
    from chatspan.instrumentation.chat_call import ChatCall

# Sources, best first.
SOURCES = ("dify", "span", "http")
_MAX_BODY_BYTES = 1024 * 1024  # a bigger body is not read for its model


# -- spans ------------------------------------------------------------------------------

_open_chats: weakref.WeakValueDictionary[int, ChatCall] = weakref.WeakValueDictionary()


def chat_started(trace_id: int, chat: ChatCall) -> None:
    """A chat span opened in this trace: spans ending in it may name its model."""
    _open_chats[trace_id] = chat


def chat_ended(trace_id: int) -> None:
    _open_chats.pop(trace_id, None)


class SpansInsideChats(SpanProcessor):
    """Spans the app's other instrumentations make inside a chat: each is marked as part
    of the chat (a GenAI span there is the chat's model call, not a chat of its own),
    and the model GenAI spans name is the chat's."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        with _ON_START:
            if otel_context.get_value(CHAT_CALL_KEY, parent_context) is not None:
                span.set_attribute(sc.CHATSPAN_INSIDE_CHAT, True)

    def on_end(self, span: ReadableSpan) -> None:
        if not _open_chats:
            return
        with _ON_END:
            self._learn_model(span)

    @staticmethod
    def _learn_model(span: ReadableSpan) -> None:
        chat = _open_chats.get(span.context.trace_id) if span.context is not None else None
        scope = span.instrumentation_scope
        if chat is None or (scope is not None and scope.name == "chatspan"):
            return  # no open chat in this trace, or the chat span itself
        attributes = span.attributes or {}
        model = next((attributes[k] for k in _SPAN_MODEL_KEYS if attributes.get(k)), None)
        if model is not None:
            provider = next((attributes[k] for k in _SPAN_PROVIDER_KEYS if attributes.get(k)), None)
            chat.learn_model(str(model), str(provider) if provider else None, source="span")


_ON_START = Guard("SpansInsideChats.on_start")
_ON_END = Guard("SpansInsideChats.on_end")
_SPAN_MODEL_KEYS = (sc.GEN_AI_RESPONSE_MODEL, sc.GEN_AI_REQUEST_MODEL, sc.LLM_MODEL_NAME)
_SPAN_PROVIDER_KEYS = (sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM, "llm.provider")


# -- HTTP calls -------------------------------------------------------------------------


def model_of_request(url: str, body: bytes | str | None) -> tuple[str, str | None] | None:
    """(model, provider) when `body` is a call to a model API, else None."""
    if not body or len(body) > _MAX_BODY_BYTES:
        return None
    parts = urlsplit(url)
    path, host = parts.path.rstrip("/"), (parts.hostname or "")
    if path.endswith(("/chat/completions", "/completions", "/responses")):
        api = "openai"
    elif path.endswith("/messages") and "anthropic" in host:
        api = "anthropic"
    elif path.endswith("/dispatch/llm/invoke"):  # Dify 1.x's plugin daemon
        api = "dify_plugin"
    else:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if api == "dify_plugin":
        inner = data.get("data")
        if not isinstance(inner, dict) or not isinstance(inner.get("model"), str):
            return None
        provider = inner.get("provider")
        return inner["model"], provider if isinstance(provider, str) else None
    model = data.get("model")
    return (model, api) if isinstance(model, str) and model else None


def _learn_from_request(url: str, body: bytes | str | None) -> None:
    chat = current_chat()
    if chat is None:
        return
    found = model_of_request(url, body)
    if found is not None:
        chat.learn_model(found[0], found[1], source="http")


_originals: dict[tuple[type, str], Callable[..., Any]] = {}


def install() -> None:
    """Wrap httpx's and requests' send (those installed), once per process."""
    try:
        import httpx  # noqa: PLC0415
    except ImportError:
        pass
    else:
        _wrap(httpx.Client, "send", _httpx_request)
        _wrap(httpx.AsyncClient, "send", _httpx_request)
    try:
        import requests  # noqa: PLC0415
    except ImportError:
        pass
    else:
        _wrap(requests.Session, "send", _requests_request)


def uninstall() -> None:
    while _originals:
        (owner, method), original = _originals.popitem()
        setattr(owner, method, original)


def _wrap(owner: type, method: str, read: Callable[[Any], tuple[str, Any]]) -> None:
    """Look at each request `owner.method` sends while a chat is current, then send it."""
    if (owner, method) in _originals:
        return
    original = _originals[(owner, method)] = getattr(owner, method)
    guard = Guard(f"{owner.__module__.partition('.')[0]}.{owner.__qualname__}.{method}")

    def look(request: Any) -> None:
        with guard:
            if current_chat() is not None:
                _learn_from_request(*read(request))

    if inspect.iscoroutinefunction(original):

        async def send_async(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            look(request)
            return await original(client, request, *args, **kwargs)

        setattr(owner, method, functools.wraps(original)(send_async))
    else:

        def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            look(request)
            return original(client, request, *args, **kwargs)

        setattr(owner, method, functools.wraps(original)(send))


def _httpx_request(request: Any) -> tuple[str, Any]:
    if request.method != "POST":
        return "", None
    try:
        return str(request.url), request.content
    except Exception:  # a streamed body that was not read: not a model call we can see
        return "", None


def _requests_request(request: Any) -> tuple[str, Any]:
    if request.method != "POST":
        return "", None
    return request.url or "", request.body
