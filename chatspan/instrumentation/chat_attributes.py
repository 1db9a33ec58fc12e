"""The chat span's attributes, built from what the request and the response said.

They are set in three steps: who asks, where, when the span starts (before the view
runs); what the app's own work told the chat since; and the question, the answer and
the usage when the chat ends, once the answer has gone out, so that redacting a long
history never delays the view.
"""

from __future__ import annotations

from json.encoder import encode_basestring as _json_string
from typing import Any

from chatspan import semconv as sc
from chatspan.instrumentation.facts import RequestFacts, ResponseFacts, content_text
from chatspan.instrumentation.routing import WORKFLOW, ChatRoute
from chatspan.instrumentation.telemetry import ChatTelemetry


def span_name(route: ChatRoute, request: RequestFacts) -> str:
    name = request.app_name or request.app_id or request.model or route.shape.name
    return f"{request.operation} {name}"


def request_attributes(
    route: ChatRoute, request: RequestFacts, *, body_captured: bool
) -> dict[str, Any]:
    """Who asks, where: the span's attributes from its start."""
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: request.operation,
        sc.OPENINFERENCE_SPAN_KIND: "CHAIN" if request.operation == WORKFLOW else "LLM",
        sc.CHATSPAN_ROUTE: route.path,
        sc.GEN_AI_PROVIDER_NAME: request.provider or route.shape.provider,
        sc.GEN_AI_REQUEST_MODEL: request.model,
        sc.GEN_AI_REQUEST_STREAM: request.stream,
        sc.GEN_AI_CONVERSATION_ID: request.conversation_id,
        sc.SESSION_ID: request.conversation_id,
        sc.USER_ID: request.user,
        sc.DIFY_APP_ID: request.app_id,
        sc.DIFY_APP_NAME: request.app_name,
        **request.attributes,
        sc.CHATSPAN_REDACTED: True,  # its text is put on it redacted
    }
    if not body_captured:
        attributes[sc.CHATSPAN_REQUEST_CAPTURED] = False
    return sc.present(attributes)


def learned_attributes(request: RequestFacts, learned: set[str]) -> dict[str, Any]:
    """What the app's own work told the chat after its span started."""
    attributes: dict[str, Any] = {}
    if "app" in learned or "user" in learned:
        attributes[sc.DIFY_APP_ID] = request.app_id
        attributes[sc.DIFY_APP_NAME] = request.app_name
    if "user" in learned:
        attributes[sc.USER_ID] = request.user
    if "model" in learned:
        attributes[sc.GEN_AI_REQUEST_MODEL] = request.model
        attributes[sc.GEN_AI_PROVIDER_NAME] = request.provider
    return sc.present(attributes)


def input_attributes(request: RequestFacts, telemetry: ChatTelemetry) -> dict[str, Any]:
    """The question and the conversation so far, redacted (when content is captured)."""
    if not telemetry.capture.capture_content:
        return {}
    if request.input_messages:
        messages = [
            (m.get("role"), telemetry.content(content_text(m.get("content"))))
            for m in request.input_messages
        ]
        # The query is the last user message: redacted once, with the others.
        query = next((text for role, text in reversed(messages) if role == "user"), None)
    else:
        query = telemetry.content(request.query)
        messages = [("user", query)] if query else []
    attributes: dict[str, Any] = {sc.INPUT_VALUE: query} if query else {}
    if messages:
        attributes[sc.GEN_AI_INPUT_MESSAGES] = _messages_json(messages)
    return attributes


def response_attributes(
    request: RequestFacts,
    response: ResponseFacts,
    telemetry: ChatTelemetry,
    *,
    time_to_first_piece_s: float | None,
    cancelled: bool,
) -> dict[str, Any]:
    """What the answer said: its ids, usage, timing, and its text, redacted."""
    attributes: dict[str, Any] = {
        sc.GEN_AI_RESPONSE_ID: response.message_id,
        sc.GEN_AI_RESPONSE_MODEL: response.model,
        sc.GEN_AI_USAGE_INPUT_TOKENS: response.input_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: response.output_tokens,
        **response.attributes,
    }
    if response.total_tokens != (response.input_tokens or 0) + (response.output_tokens or 0):
        attributes[sc.CHATSPAN_TOTAL_TOKENS] = response.total_tokens  # workflows: total only
    if request.conversation_id is None and response.conversation_id:
        attributes[sc.GEN_AI_CONVERSATION_ID] = response.conversation_id
        attributes[sc.SESSION_ID] = response.conversation_id
    if time_to_first_piece_s is not None:
        attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = time_to_first_piece_s
    if cancelled:
        attributes[sc.CHATSPAN_STATUS] = sc.STATUS_CANCELLED
    if telemetry.capture.capture_content and response.answer:
        answer = telemetry.content(response.answer.text())
        attributes[sc.OUTPUT_VALUE] = answer
        attributes[sc.GEN_AI_OUTPUT_MESSAGES] = _messages_json([("assistant", answer)])
        if response.answer.truncated:
            attributes[sc.CHATSPAN_OUTPUT_TRUNCATED] = True
    return sc.present(attributes)


def _messages_json(messages: list[tuple[Any, str | None]]) -> str:
    """Messages in the GenAI conventions' form, a role and text parts each, as JSON.

    Written out by hand around the json module's string encoder: the same text as
    ``json.dumps(..., ensure_ascii=False)`` of the nested dicts, at a tenth of the cost,
    which every chat pays twice.
    """
    return (
        "["
        + ", ".join(
            '{"role": '
            + _json_string(str(role or "user"))
            + ', "parts": [{"type": "text", "content": '
            + _json_string(text or "")
            + "}]}"
            for role, text in messages
        )
        + "]"
    )
