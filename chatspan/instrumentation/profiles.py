"""Route profiles: which HTTP routes carry a chat, and where the chat is in their traffic.

A :class:`ChatRoute` pairs a method and path pattern with a *shape* that knows the
request and response format: Dify's service API, console and web-app routes, the
OpenAI-compatible ``/v1/chat/completions``, or a custom route described in
``CHATSPAN_CHAT_ROUTES``. Shapes turn request JSON into :class:`RequestFacts` and
response JSON or SSE events into :class:`ResponseFacts`; they never touch spans.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatspan import semconv as sc
from chatspan.config import ConfigError
from chatspan.instrumentation.shapes.dify_errors import is_app_failure, run_failure
from chatspan.instrumentation.shapes.dify_identity import (
    CONSOLE_PASSPORT,
    WEB_APP_PASSPORT,
    app_key_digest,
    bearer_claims,
)

CHAT, COMPLETION, WORKFLOW = (
    sc.OPERATION_CHAT,
    sc.OPERATION_TEXT_COMPLETION,
    sc.OPERATION_INVOKE_WORKFLOW,
)


@dataclass
class RequestFacts:
    """What a chat request says: who asks what, in which conversation."""

    operation: str
    query: str | None = None
    user: str | None = None
    conversation_id: str | None = None
    app_id: str | None = None
    app_name: str | None = None
    model: str | None = None
    provider: str | None = None  # the model's provider, when the chat learned it
    stream: bool | None = None
    input_messages: list[dict[str, Any]] | None = None  # OpenAI-style, for gen_ai.input.messages
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExceptionFacts:
    """An error the response reported (an SSE error event, a failed workflow node)."""

    type: str
    message: str
    attributes: dict[str, Any] = field(default_factory=dict)


class AnswerText:
    """The answer as it is rebuilt from pieces, capped so a long stream stays small."""

    def __init__(self, limit: int) -> None:
        self._pieces: list[str] = []
        self._length = 0
        self._limit = limit
        self.truncated = False
        self.started = False  # a piece of text arrived (kept or not: it went to the client)

    def append(self, piece: str) -> None:
        if piece:
            self.started = True
        room = self._limit - self._length
        if room <= 0:
            self.truncated = self.truncated or bool(piece)
            return
        if len(piece) > room:
            piece, self.truncated = piece[:room], True
        self._pieces.append(piece)
        self._length += len(piece)

    def replace(self, text: str) -> None:
        self._pieces, self._length, self.truncated = [], 0, False
        self.append(text)

    def text(self) -> str:
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def __bool__(self) -> bool:
        return self._length > 0


@dataclass
class ResponseFacts:
    """What the response said, gathered from one JSON body or from many SSE events."""

    answer: AnswerText
    conversation_id: str | None = None
    message_id: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    failed: str | None = None  # why the chat failed (an error code), when the response says so
    error_message: str | None = None
    exceptions: list[ExceptionFacts] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    def usage(self, input_tokens: Any, output_tokens: Any, total_tokens: Any = None) -> None:
        self.input_tokens = _int(input_tokens, self.input_tokens)
        self.output_tokens = _int(output_tokens, self.output_tokens)
        self.total_tokens = _int(total_tokens, self.total_tokens)


class Shape:
    """How one family of routes encodes a chat. Subclasses override what they support."""

    name = "custom"
    provider: str | None = None

    def read_credentials(
        self, authorization: str | None, params: Mapping[str, str], facts: RequestFacts
    ) -> None:
        """Fill `facts` from the request's credential and path parameters, as labels.

        The built-in rule: an ``<app_id>`` path parameter names the app."""
        facts.app_id = params.get("app_id") or facts.app_id

    def read_request(self, body: Mapping[str, Any], facts: RequestFacts) -> None:
        """Fill `facts` from the request JSON."""

    def read_response(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        """Fill `facts` from a blocking JSON answer (or a JSON error body)."""

    def read_event(self, event: Mapping[str, Any], facts: ResponseFacts) -> None:
        """Fill `facts` from one SSE event's JSON data."""

    def piece(self, data: bytes) -> bytes | None:
        """The text of a stream's text event (the body of its JSON string) when `data`
        is one whose only news is that text, found without parsing the JSON; None
        sends the event to the JSON parser and read_event. Most events of a streamed
        answer are such pieces, so this must cost a few C-level operations."""
        return None

    def explains(self, exception: BaseException, facts: ResponseFacts) -> bool:
        """Whether an exception the app raised is a failure the response already reports
        (one cause, one error): then only the response's report is kept."""
        return False


# Text pieces of streams. _JSON_TEXT is a JSON string's body (escapes included).
_JSON_TEXT = rb'([^"\\]*+(?:\\.[^"\\]*+)*+)'
# Dify: a message event with an "answer" key after a comma, whose string is followed by
# no brace up to the event's closing one at the end. That key is the event's own: in a
# nested object two closing braces would follow it, and inside a string (or a key that
# ends in "answer") its quote would be escaped.
_DIFY_PIECE_STARTS = tuple(
    f'{{"event":{space}"{kind}",'.encode()
    for space in (" ", "")
    for kind in ("message", "agent_message")
)
_DIFY_ANSWER = re.compile(rb', ?"answer": ?"' + _JSON_TEXT + rb'"[^{}]*\}\Z')
# OpenAI: a chunk whose delta is only content (the chunk carries no usage, no error).
_OPENAI_CONTENT = re.compile(rb'"delta": ?\{"content": ?"' + _JSON_TEXT + rb'"\}[^{]*\}\Z')


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
            facts.app_id = _text(claims.get("app_id"))
            facts.user = _text(claims.get("end_user_id"))
        elif self.invoke_from == "debugger":
            facts.app_id = params.get("app_id")
            if claims.get("sub") == CONSOLE_PASSPORT:
                facts.user = _text(claims.get("user_id"))

    def read_request(self, body: Mapping[str, Any], facts: RequestFacts) -> None:
        facts.query = _text(body.get("query"))
        inputs = body.get("inputs")
        if facts.query is None and isinstance(inputs, Mapping) and inputs:
            facts.query = json.dumps(inputs, ensure_ascii=False, default=str)
        facts.user = _text(body.get("user")) or facts.user
        facts.conversation_id = _text(body.get("conversation_id"))
        mode = body.get("response_mode")
        facts.stream = mode == "streaming" if isinstance(mode, str) else None
        files = body.get("files")
        if isinstance(files, list) and files:
            facts.attributes[sc.DIFY_FILES_COUNT] = len(files)

    def read_response(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        data = body.get("data")
        if isinstance(data, Mapping) and "workflow_run_id" in body:  # a blocking workflow run
            run_id = _text(body.get("workflow_run_id"))
            facts.attributes[sc.DIFY_WORKFLOW_RUN_ID] = run_id
            facts.message_id = facts.message_id or run_id
            self._workflow_finished(data, facts)
            return
        if "answer" in body:
            facts.answer.replace(_text(body.get("answer")) or "")
        facts.conversation_id = _text(body.get("conversation_id")) or facts.conversation_id
        facts.message_id = _text(body.get("message_id") or body.get("id")) or facts.message_id
        self._metadata(body.get("metadata"), facts)
        if "code" in body and "status" in body and "answer" not in body:  # an error body
            self._error(body, facts, in_stream=False)

    def read_event(self, event: Mapping[str, Any], facts: ResponseFacts) -> None:
        kind = event.get("event")
        if facts.conversation_id is None:
            facts.conversation_id = _text(event.get("conversation_id"))
        if facts.message_id is None:
            facts.message_id = _text(event.get("message_id"))
        if kind in ("message", "agent_message"):
            facts.answer.append(_text(event.get("answer")) or "")
        elif kind == "message_replace":
            facts.answer.replace(_text(event.get("answer")) or "")
        elif kind == "message_end":
            self._metadata(event.get("metadata"), facts)
        elif kind == "error":
            self._error(event, facts, in_stream=True)
        elif kind == "workflow_started":
            run_id = _text(event.get("workflow_run_id"))
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
        code = _text(body.get("code")) or "stream_error"
        message = _text(body.get("message")) or code
        facts.failed = facts.failed or code
        run_error = run_failure(message)
        if run_error is not None:  # a failed workflow run, reported once more
            DifyShape._workflow_failed(run_error, facts)
            return
        status = _int(body.get("status"))
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
        if isinstance(usage, Mapping):
            facts.usage(
                usage.get("prompt_tokens"),
                usage.get("completion_tokens"),
                usage.get("total_tokens"),
            )
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
            sc.CHATSPAN_NODE_ID: _text(data.get("node_id")),
            sc.CHATSPAN_NODE_TYPE: _text(data.get("node_type")),
            sc.CHATSPAN_NODE_TITLE: _text(data.get("title")),
        }
        DifyShape._workflow_failed(_text(data.get("error")) or "workflow node failed", facts, node)

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
            DifyShape._workflow_failed(_text(data.get("error")) or "workflow run failed", facts)
        elif status == "stopped":
            facts.failed = facts.failed or "workflow_stopped"


def _workflow_failure(facts: ResponseFacts, error: str) -> ExceptionFacts | None:
    """The failed run already reported with this error, if any."""
    for found in facts.exceptions:
        if found.type == sc.DIFY_WORKFLOW_FAILED and found.message == error:
            return found
    return None


class OpenAIShape(Shape):
    """The OpenAI-compatible chat completions API."""

    name = "openai"
    provider = "openai"

    def piece(self, data: bytes) -> bytes | None:
        if not data.startswith(b"{") or b'"usage"' in data or b'"error"' in data:
            return None
        delta = data.find(b'"delta"')  # the first choice's, with no other choice after it
        found = _OPENAI_CONTENT.match(data, delta) if delta > 0 else None
        return found.group(1) if found is not None else None

    def read_request(self, body: Mapping[str, Any], facts: RequestFacts) -> None:
        messages = body.get("messages")
        if isinstance(messages, list):
            facts.input_messages = [m for m in messages if isinstance(m, Mapping)]
            for message in reversed(facts.input_messages):
                if message.get("role") == "user":
                    facts.query = content_text(message.get("content"))
                    break
        facts.model = _text(body.get("model"))
        facts.stream = bool(body.get("stream")) if "stream" in body else False
        facts.user = _text(body.get("user"))

    def read_response(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            message = choices[0].get("message")
            if isinstance(message, Mapping):
                facts.answer.replace(content_text(message.get("content")) or "")
        self._common(body, facts)
        error = body.get("error")
        if isinstance(error, Mapping):
            facts.failed = _text(error.get("type")) or "error"
            facts.error_message = _text(error.get("message"))

    def read_event(self, event: Mapping[str, Any], facts: ResponseFacts) -> None:
        choices = event.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, Mapping) else None
                if isinstance(delta, Mapping) and isinstance(delta.get("content"), str):
                    facts.answer.append(delta["content"])
        self._common(event, facts)
        error = event.get("error")
        if isinstance(error, Mapping):
            kind = _text(error.get("type")) or "error"
            facts.failed = kind
            facts.exceptions.append(
                ExceptionFacts(type=f"openai.{kind}", message=_text(error.get("message")) or kind)
            )

    @staticmethod
    def _common(body: Mapping[str, Any], facts: ResponseFacts) -> None:
        facts.message_id = facts.message_id or _text(body.get("id"))
        facts.model = _text(body.get("model")) or facts.model
        usage = body.get("usage")
        if isinstance(usage, Mapping):
            facts.usage(
                usage.get("prompt_tokens"),
                usage.get("completion_tokens"),
                usage.get("total_tokens"),
            )


@dataclass(frozen=True)
class CustomShape(Shape):
    """A chat route described by configuration: dotted JSON paths, or an extractor."""

    query: str | None = None
    user: str | None = None
    conversation: str | None = None
    model: str | None = None
    answer: str | None = None
    stream_answer: str | None = None
    response_conversation: str | None = None
    message_id: str | None = None
    input_tokens: str | None = None
    output_tokens: str | None = None
    extractor: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def read_request(self, body: Mapping[str, Any], facts: RequestFacts) -> None:
        facts.query = _text(_path(body, self.query))
        facts.user = _text(_path(body, self.user))
        facts.conversation_id = _text(_path(body, self.conversation))
        facts.model = _text(_path(body, self.model))
        if self.extractor is not None:
            found = self.extractor(body)
            for key in ("query", "user", "conversation_id", "model", "app_id"):
                if found.get(key) is not None:
                    setattr(facts, key, _text(found[key]))
            if found.get("stream") is not None:
                facts.stream = bool(found["stream"])

    def read_response(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        answer = _text(_path(body, self.answer))
        if answer is not None:
            facts.answer.replace(answer)
        self._common(body, facts)

    def read_event(self, event: Mapping[str, Any], facts: ResponseFacts) -> None:
        piece = _text(_path(event, self.stream_answer or self.answer))
        if piece:
            facts.answer.append(piece)
        self._common(event, facts)

    def _common(self, body: Mapping[str, Any], facts: ResponseFacts) -> None:
        conversation = _text(_path(body, self.response_conversation))
        facts.conversation_id = facts.conversation_id or conversation
        facts.message_id = facts.message_id or _text(_path(body, self.message_id))
        facts.usage(_path(body, self.input_tokens), _path(body, self.output_tokens))


DIFY = DifyShape("service-api")
DIFY_WEB_APP = DifyShape("web-app")
DIFY_CONSOLE = DifyShape("debugger")
OPENAI = OpenAIShape()


@dataclass(frozen=True)
class ChatRoute:
    """A method and path pattern (``<name>`` captures a segment) that carries a chat."""

    method: str
    path: str
    operation: str
    shape: Shape

    def regex(self) -> re.Pattern[str]:
        pattern = re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>[^/]+)", self.path)
        return re.compile(f"^{pattern}/?$")


def dify_routes() -> list[ChatRoute]:
    """Dify's chat routes: service API, console debugger and published web app."""
    routes = []
    for prefix, shape in (
        ("/v1", DIFY),
        ("/api", DIFY_WEB_APP),
        ("/console/api/apps/<app_id>", DIFY_CONSOLE),
    ):
        routes += [
            ChatRoute("POST", f"{prefix}/chat-messages", CHAT, shape),
            ChatRoute("POST", f"{prefix}/completion-messages", COMPLETION, shape),
        ]
    routes += [
        ChatRoute("POST", "/v1/workflows/run", WORKFLOW, DIFY),
        ChatRoute("POST", "/api/workflows/run", WORKFLOW, DIFY_WEB_APP),
    ]
    return routes


def openai_routes() -> list[ChatRoute]:
    return [ChatRoute("POST", "/v1/chat/completions", CHAT, OPENAI)]


@dataclass(frozen=True)
class RouteMatch:
    route: ChatRoute
    params: dict[str, str]


class Router:
    """Finds the chat route of a request: a dict lookup for fixed paths, then patterns."""

    def __init__(self, routes: Iterable[ChatRoute]) -> None:
        self._fixed: dict[tuple[str, str], ChatRoute] = {}
        self._patterns: list[tuple[str, re.Pattern[str], ChatRoute]] = []
        for route in routes:
            if "<" in route.path:
                self._patterns.append((route.method, route.regex(), route))
            else:
                self._fixed[(route.method, route.path.rstrip("/") or "/")] = route
        self._methods = {route.method for route in self._fixed.values()} | {
            method for method, _, _ in self._patterns
        }

    def match(self, method: str, path: str) -> RouteMatch | None:
        if method not in self._methods:
            return None
        route = self._fixed.get((method, path.rstrip("/") or "/"))
        if route is not None:
            return RouteMatch(route, {})
        for route_method, regex, route in self._patterns:
            if route_method == method and (found := regex.match(path)):
                return RouteMatch(route, found.groupdict())
        return None


def read_custom_routes(
    raw: str, variable: str = "CHATSPAN_CHAT_ROUTES"
) -> tuple[list[ChatRoute], list[str]]:
    """Parse the JSON list of custom chat routes: the routes understood, and what is
    wrong with the others (each naming `variable`). A route that is not understood is
    skipped, never the others: a typo must not stop chats being recorded."""
    if not raw.strip():
        return [], []
    try:
        specs = json.loads(raw)
    except ValueError as error:
        return [], [f"{variable} must be a JSON list of route objects: {error}; {_ALL_SKIPPED}"]
    if not isinstance(specs, list):
        return [], [f"{variable} must be a JSON list of route objects; {_ALL_SKIPPED}"]
    routes, problems = [], []
    for index, spec in enumerate(specs):
        try:
            routes.append(_custom_route(spec, index, variable))
        except ConfigError as error:
            problems.append(f"{error}; this route is skipped, the others are recorded")
    return routes, problems


_ALL_SKIPPED = "every custom route is skipped; the built-in routes are recorded"

_CUSTOM_KEYS = {
    "method",
    "path",
    "operation",
    "format",
    "query",
    "user",
    "conversation",
    "model",
    "answer",
    "stream_answer",
    "response_conversation",
    "message_id",
    "input_tokens",
    "output_tokens",
    "extractor",
}


def _custom_route(spec: Any, index: int, variable: str) -> ChatRoute:
    where = f"{variable}[{index}]"
    if not isinstance(spec, Mapping) or not isinstance(spec.get("path"), str):
        raise ConfigError(f'{where} must be an object with at least a "path"')
    unknown = set(spec) - _CUSTOM_KEYS
    if unknown:
        raise ConfigError(
            f"{where} has unknown keys {sorted(unknown)}; known keys: {sorted(_CUSTOM_KEYS)}"
        )
    operation = spec.get("operation", CHAT)
    if operation not in (CHAT, COMPLETION, WORKFLOW):
        raise ConfigError(
            f"{where}: operation must be one of chat, text_completion, invoke_workflow"
        )
    fmt = spec.get("format")
    if fmt is not None:
        shapes = {"dify": DIFY, "openai": OPENAI}
        if fmt not in shapes:
            raise ConfigError(f'{where}: format must be "dify" or "openai", got {fmt!r}')
        shape: Shape = shapes[fmt]
    else:
        paths = _CUSTOM_KEYS - {"method", "path", "operation", "format"}
        fields = {k: spec[k] for k in paths if k in spec}
        if "extractor" in fields:
            fields["extractor"] = _load_callable(fields["extractor"], where)
        shape = CustomShape(**fields)
    return ChatRoute(str(spec.get("method", "POST")).upper(), spec["path"], operation, shape)


def _load_callable(reference: Any, where: str) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    if not isinstance(reference, str) or ":" not in reference:
        raise ConfigError(f'{where}: extractor must be "package.module:function"')
    module_name, _, attribute = reference.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{where}: cannot load extractor {reference!r}: {error}") from None
    if not callable(function):
        raise ConfigError(f"{where}: extractor {reference!r} is not callable")
    return function


def decode_pieces(pieces: list[bytes]) -> str:
    """Text pieces (JSON string bodies, as ``Shape.piece`` finds them) as one string."""
    raw = b"".join(pieces)
    if b"\\" not in raw:
        return raw.decode("utf-8", "replace")
    return json.loads(b'"' + raw + b'"')


def _path(body: Any, dotted: str | None) -> Any:
    """Follow a dotted path (``choices.0.delta.content``) through JSON."""
    if not dotted:
        return None
    value = body
    for part in dotted.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, Sequence) and not isinstance(value, str) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else None
        else:
            return None
    return value


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _int(value: Any, default: int | None = None) -> int | None:
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def content_text(content: Any) -> str | None:
    """OpenAI message content: a string, or a list of parts of which text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        ]
        return "".join(texts) or None
    return None
