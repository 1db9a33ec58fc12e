"""Dify's shape: its chat, completion and workflow APIs, on each of its ways in.

Dify answers blocking chats with one JSON body and streaming ones with SSE events
(``message`` pieces, ``message_end`` with the usage, ``error``, the workflow events);
its error codes are sorted into the app's failures and the caller's mistakes by
``dify_errors``, and its credentials are read as labels by ``dify_identity``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from chatspan import semconv as sc
from chatspan.instrumentation.facts import (
    ExceptionFacts,
    RequestFacts,
    ResponseFacts,
    int_or,
    text_or_none,
)
from chatspan.instrumentation.shapes.base import JSON_TEXT, Shape
from chatspan.instrumentation.shapes.dify_errors import is_app_failure, run_failure
from chatspan.instrumentation.shapes.dify_identity import (
    CONSOLE_PASSPORT,
    WEB_APP_PASSPORT,
    app_key_digest,
    bearer_claims,
)
from chatspan.instrumentation.shapes.openai import read_usage

# A text piece: a message event with an "answer" key after a comma, whose string is
# followed by no brace up to the event's closing one at the end. That key is the event's
# own: in a nested object two closing braces would follow it, and inside a string (or a
# key that ends in "answer") its quote would be escaped.
_DIFY_PIECE_STARTS = tuple(
    f'{{"event":{space}"{kind}",'.encode()
    for space in (" ", "")
    for kind in ("message", "agent_message")
)
_DIFY_ANSWER = re.compile(rb', ?"answer": ?"' + JSON_TEXT + rb'"[^{}]*\}\Z')
# Text-to-speech audio, which is never captured; its event name comes first.
_AUDIO_EVENT = b"tts_message"

# Dify's usage figures kept as they are, beside the GenAI token counts.
_DIFY_USAGE_ATTRIBUTES = tuple(
    (key, sc.DIFY_USAGE_PREFIX + key)
    for key in ("latency", "total_price", "currency", "time_to_first_token")
)


class DifyShape(Shape):
    """Dify's chat, completion and workflow APIs, for one way in: the service API
    (``service-api``), the published web app (``web-app``) or the console debugger
    (``debugger``), named as Dify's ``invoke_from`` names them."""

    name = "dify"

    def __init__(self, invoke_from: str) -> None:
        self.invoke_from = invoke_from

    def piece(self, data: bytes) -> bytes | None:
        if data.startswith(_DIFY_PIECE_STARTS):
            found = _DIFY_ANSWER.search(data)
            if found is not None:
                return found.group(1)
        return None

    def never_parsed(self, data: bytes) -> bool:
        return _AUDIO_EVENT in data[:64]

    def read_credentials(
        self, authorization: str | None, params: Mapping[str, str], facts: RequestFacts
    ) -> None:
        """The app and user the credential names; Dify's own objects refine them later
        (see dify_objects), and the app key's digest names the app only as a fallback."""
        facts.attributes[sc.DIFY_INVOKE_FROM] = self.invoke_from
        if self.invoke_from == "service-api":
            digest = app_key_digest(authorization)
            facts.app_id = digest
            facts.attributes[sc.DIFY_API_KEY_DIGEST] = digest
            return
        claims = bearer_claims(authorization)
        if self.invoke_from == "web-app" and claims.get("sub") == WEB_APP_PASSPORT:
            facts.app_id = text_or_none(claims.get("app_id"))
            facts.user = text_or_none(claims.get("end_user_id"))
        elif self.invoke_from == "debugger":
            facts.app_id = params.get("app_id")
            if claims.get("sub") == CONSOLE_PASSPORT:
                facts.user = text_or_none(claims.get("user_id"))

    def read_request(self, body: Mapping[str, Any], facts: RequestFacts) -> None:
        facts.query = text_or_none(body.get("query"))
        inputs = body.get("inputs")
        if facts.query is None and isinstance(inputs, Mapping) and inputs:
            facts.query = json.dumps(inputs, ensure_ascii=False, default=str)
        facts.user = text_or_none(body.get("user")) or facts.user
        facts.conversation_id = text_or_none(body.get("conversation_id"))
        mode = body.get("response_mode")
        facts.stream = mode == "streaming" if isinstance(mode, str) else None
        files = body.get("files")
        if isinstance(files, list) and files:
            facts.attributes[sc.DIFY_FILES_COUNT] = len(files)

    def read_response(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        data = body.get("data")
        if isinstance(data, Mapping) and "workflow_run_id" in body:  # a blocking workflow run
            run_id = text_or_none(body.get("workflow_run_id"))
            facts.attributes[sc.DIFY_WORKFLOW_RUN_ID] = run_id
            facts.message_id = facts.message_id or run_id
            self._workflow_finished(data, facts)
            return
        if "answer" in body:
            facts.answer.replace(text_or_none(body.get("answer")) or "")
        facts.conversation_id = text_or_none(body.get("conversation_id")) or facts.conversation_id
        facts.message_id = (
            text_or_none(body.get("message_id") or body.get("id")) or facts.message_id
        )
        self._metadata(body.get("metadata"), facts)
        if "code" in body and "status" in body and "answer" not in body:  # an error body
            self._error(body, facts, in_stream=False)

    def read_event(self, event: Mapping[str, Any], facts: ResponseFacts) -> None:
        kind = event.get("event")
        if facts.conversation_id is None:
            facts.conversation_id = text_or_none(event.get("conversation_id"))
        if facts.message_id is None:
            facts.message_id = text_or_none(event.get("message_id"))
        if kind in ("message", "agent_message"):
            facts.answer.append(text_or_none(event.get("answer")) or "")
        elif kind == "message_replace":
            facts.answer.replace(text_or_none(event.get("answer")) or "")
        elif kind == "message_end":
            self._metadata(event.get("metadata"), facts)
        elif kind == "error":
            self._error(event, facts, in_stream=True)
        elif kind == "workflow_started":
            run_id = text_or_none(event.get("workflow_run_id"))
            facts.attributes[sc.DIFY_WORKFLOW_RUN_ID] = run_id
            facts.message_id = facts.message_id or run_id  # a workflow run has no message
        elif kind == "node_finished":
            self._node_finished(event.get("data"), facts)
        elif kind == "workflow_finished" and isinstance(event.get("data"), Mapping):
            self._workflow_finished(event["data"], facts)
        # ping, tts_message, tts_message_end, agent_thought, message_file, node_started,
        # node_retry, iteration_*, parallel_branch_*, text_chunk, agent_log and anything
        # newer pass through untouched and are not captured.

    def explains(self, exception: BaseException, facts: ResponseFacts) -> bool:
        """Dify raises a failed run as ValueError("Run failed: ..."), answered 400: the
        run's failure the response reports is that exception (advanced chat, blocking)."""
        error = run_failure(str(exception))
        return error is not None and _workflow_failure(facts, error) is not None

    @staticmethod
    def _error(body: Mapping[str, Any], facts: ResponseFacts, *, in_stream: bool) -> None:
        """An error body or ``error`` event: the app's failure is an exception; a caller's
        mistake only fails the chat (see dify_errors)."""
        code = text_or_none(body.get("code")) or "stream_error"
        message = text_or_none(body.get("message")) or code
        facts.failed = facts.failed or code
        run_error = run_failure(message)
        if run_error is not None:  # a failed workflow run, reported once more
            DifyShape._workflow_failed(run_error, facts)
            return
        status = int_or(body.get("status"))
        if in_stream:
            facts.error_message = facts.error_message or message
        else:
            facts.error_message = message
        if is_app_failure(code, status, in_stream=in_stream):
            facts.exceptions.append(
                ExceptionFacts(
                    type=f"dify.{code}",
                    message=message,
                    attributes=sc.present({sc.DIFY_ERROR_STATUS: status}),
                )
            )

    @staticmethod
    def _workflow_failed(
        error: str, facts: ResponseFacts, node: Mapping[str, Any] | None = None
    ) -> None:
        """One failed run, one error: a node's failure and the run's failure that
        repeats it (or Dify's "Run failed: ..." error after it) are the same cause."""
        node_attributes = sc.present(dict(node or {}))
        known = _workflow_failure(facts, error)
        if known is not None:
            known.attributes.update(node_attributes)  # the node, once a report names it
        else:
            facts.exceptions.append(
                ExceptionFacts(
                    type=sc.DIFY_WORKFLOW_FAILED, message=error, attributes=node_attributes
                )
            )
        facts.failed = facts.failed or "workflow_failed"

    @staticmethod
    def _metadata(metadata: Any, facts: ResponseFacts) -> None:
        if not isinstance(metadata, Mapping):
            return
        usage = metadata.get("usage")
        read_usage(usage, facts)
        if isinstance(usage, Mapping):
            for key, attribute in _DIFY_USAGE_ATTRIBUTES:
                value = usage.get(key)
                if value is not None:
                    facts.attributes[attribute] = _scalar(value)
        resources = metadata.get("retriever_resources")
        if isinstance(resources, list) and resources:
            facts.attributes[sc.DIFY_RETRIEVER_RESOURCES_COUNT] = len(resources)

    @staticmethod
    def _node_finished(data: Any, facts: ResponseFacts) -> None:
        if not isinstance(data, Mapping) or data.get("status") != "failed":
            return
        node = {
            sc.CHATSPAN_NODE_ID: text_or_none(data.get("node_id")),
            sc.CHATSPAN_NODE_TYPE: text_or_none(data.get("node_type")),
            sc.CHATSPAN_NODE_TITLE: text_or_none(data.get("title")),
        }
        DifyShape._workflow_failed(
            text_or_none(data.get("error")) or "workflow node failed", facts, node
        )

    @staticmethod
    def _workflow_finished(data: Mapping[str, Any], facts: ResponseFacts) -> None:
        facts.usage(None, None, data.get("total_tokens"))
        outputs = data.get("outputs")
        if not facts.answer and isinstance(outputs, Mapping) and outputs:
            answer = outputs.get("answer") if isinstance(outputs.get("answer"), str) else None
            facts.answer.replace(answer or json.dumps(outputs, ensure_ascii=False, default=str))
        status = data.get("status")
        if status in ("failed", "stopped"):
            facts.attributes[sc.DIFY_WORKFLOW_STATUS] = status
        if status == "failed":
            DifyShape._workflow_failed(
                text_or_none(data.get("error")) or "workflow run failed", facts
            )
        elif status == "stopped":
            facts.failed = facts.failed or "workflow_stopped"


def _workflow_failure(facts: ResponseFacts, error: str) -> ExceptionFacts | None:
    """The failed run already reported with this error, if any."""
    for found in facts.exceptions:
        if found.type == sc.DIFY_WORKFLOW_FAILED and found.message == error:
            return found
    return None


def _scalar(value: Any) -> Any:
    """A usage figure as an attribute value: a scalar as it is, anything else as text."""
    return value if isinstance(value, (str, int, float, bool)) else str(value)


# One shape per way into Dify.
DIFY = DifyShape("service-api")
DIFY_WEB_APP = DifyShape("web-app")
DIFY_CONSOLE = DifyShape("debugger")
