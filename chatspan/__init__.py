"""chatspan: every chat turn and every error of an LLM chat app, as OpenTelemetry spans
and as rows an admin can query.

The public manual API is :func:`log_chat` and :func:`log_error`; everything else is
wired by ``opentelemetry-instrument`` through entry points.
"""

from chatspan.manual import log_chat, log_error

__all__ = ["log_chat", "log_error"]
