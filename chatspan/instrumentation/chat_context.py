"""The chat being served in the current context, for code that runs on its behalf.

The chat's context (see ``ChatCall.context``) carries the chat call itself beside its
span, so whatever runs in that context learns about the chat without being handed it:
Dify's auth objects as they load, the model calls the answer makes (in the worker
threads and greenlets the chat starts, which OpenTelemetry hands the context to).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import context as otel_context

if TYPE_CHECKING:
    from chatspan.instrumentation.chat_call import ChatCall

CHAT_CALL_KEY = otel_context.create_key("chatspan-chat-call")


def current_chat() -> ChatCall | None:
    """The chat whose context is current, if any."""
    return otel_context.get_value(CHAT_CALL_KEY)  # type: ignore[return-value]
