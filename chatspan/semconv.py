"""Every span attribute and event name chatspan reads or writes, in one place.

Three vocabularies meet on a chat span: the OpenTelemetry GenAI semantic conventions
(what standard backends understand), OpenInference (what Phoenix and Langfuse show),
and ``chatspan.*`` / ``dify.*`` for what neither names.
"""

from typing import Any, Literal


def present(values: dict[str, Any]) -> dict[str, Any]:
    """Attributes without the unset ones: OpenTelemetry attributes cannot be None."""
    return {key: value for key, value in values.items() if value is not None}


# OpenTelemetry GenAI semantic conventions.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # seconds
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"

# Operations whose span is one chat turn.
OPERATION_CHAT = "chat"
OPERATION_TEXT_COMPLETION = "text_completion"
OPERATION_INVOKE_WORKFLOW = "invoke_workflow"
CHAT_OPERATIONS = frozenset(
    {
        OPERATION_CHAT,
        OPERATION_TEXT_COMPLETION,
        "generate_content",
        OPERATION_INVOKE_WORKFLOW,
        "invoke_agent",
    }
)

# General OpenTelemetry conventions.
USER_ID = "user.id"
ENDUSER_ID = "enduser.id"  # the deprecated name of user.id
SERVICE_NAME = "service.name"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
ERROR_TYPE = "error.type"
EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"

# OpenInference, so Phoenix and Langfuse show the chat.
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
INPUT_VALUE = "input.value"
OUTPUT_VALUE = "output.value"
SESSION_ID = "session.id"
LLM_MODEL_NAME = "llm.model_name"
LLM_TOKEN_COUNT_TOTAL = "llm.token_count.total"  # noqa: S105  (not a secret)

# Dify.
DIFY_APP_ID = "dify.app_id"  # Dify's app UUID; outside Dify, "key-" and the key's digest
DIFY_APP_NAME = "dify.app.name"
DIFY_API_KEY_DIGEST = "dify.api_key.digest"  # a SHA-256 prefix of the app key, never the key
DIFY_INVOKE_FROM = "dify.invoke_from"  # service-api, web-app or debugger, as Dify says
DIFY_MESSAGE_ID = "dify.message_id"
DIFY_WORKFLOW_RUN_ID = "dify.workflow_run_id"
DIFY_WORKFLOW_STATUS = "dify.workflow.status"  # set when a run failed or was stopped
DIFY_FILES_COUNT = "dify.files.count"
DIFY_RETRIEVER_RESOURCES_COUNT = "dify.retriever_resources.count"
DIFY_ERROR_STATUS = "dify.error.status"  # the HTTP status an SSE error event carries
DIFY_USAGE_PREFIX = "dify.usage."  # + latency, total_price, currency, time_to_first_token
# The one error type of a failed workflow run, whether or not the failing node is named:
# the same failure fingerprints alike blocking or streaming, workflow or advanced chat.
DIFY_WORKFLOW_FAILED = "dify.workflow_failed"

# chatspan's own.
CHATSPAN_KIND = "chatspan.kind"  # "chat" marks a chat span whatever its operation
CHATSPAN_KIND_CHAT = "chat"
CHATSPAN_LATENCY_MS = "chatspan.latency_ms"  # overrides the span's duration
CHATSPAN_STATUS = "chatspan.status"  # "cancelled" when the client went away
CHATSPAN_ROUTE = "chatspan.route"
CHATSPAN_TOTAL_TOKENS = "chatspan.usage.total_tokens"
CHATSPAN_REQUEST_CAPTURED = "chatspan.request.captured"  # false: body over the cap
CHATSPAN_RESPONSE_CAPTURED = "chatspan.response.captured"  # false: body over the cap
CHATSPAN_ATTRIBUTES_DROPPED = "chatspan.attributes_dropped"  # extra attributes over the cap
CHATSPAN_OUTPUT_TRUNCATED = "chatspan.output.truncated"
# Set on a server span whose exception is already recorded on its chat span child.
CHATSPAN_EXCEPTION_ON_CHAT_SPAN = "chatspan.exception_on_chat_span"
# Set on spans started inside a chat (a model call's GenAI span): part of the chat, not
# a chat of their own.
CHATSPAN_INSIDE_CHAT = "chatspan.inside_chat"
# chatspan redacted this text itself: on a span, its attributes; on an exception event,
# its message, stack trace and attributes. The mapping into rows redacts the rest.
CHATSPAN_REDACTED = "chatspan.redacted"
CHATSPAN_NODE_ID = "chatspan.node.id"
CHATSPAN_NODE_TYPE = "chatspan.node.type"
CHATSPAN_NODE_TITLE = "chatspan.node.title"

# Statuses a chat row can have.
ChatStatus = Literal["ok", "error", "cancelled"]
STATUS_OK: ChatStatus = "ok"
STATUS_ERROR: ChatStatus = "error"
STATUS_CANCELLED: ChatStatus = "cancelled"
