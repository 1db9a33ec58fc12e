"""What a Dify app answers, framework-neutral: the example apps share it.

Replies follow Dify's service API (see Dify's docs): blocking JSON answers, SSE event
streams (``message`` pieces, ``message_end`` with usage, keep-alive ``ping``, TTS audio,
events newer clients do not know), workflow runs with node events, and the
OpenAI-compatible chat completions shape. Special words in the query ask for the
failures a real deployment sees:

- ``[stream-error]``: the stream stops with an ``error`` event (HTTP status stays 200)
- ``[model-down]``: the model provider fails before the first piece: a blocking chat is
  answered ``400 completion_request_error``, a stream sends an ``error`` event, as
  Dify does during a model outage
- ``[node-fail]``: in an advanced-chat app, the Code node fails: a blocking chat raises
  ``ValueError("Run failed: ...")`` (answered 400 ``invalid_param``), a stream sends the
  failed node, the failed run and an ``error`` event, as Dify does
- ``[replace]``: moderation replaces the answer with ``message_replace``
- ``[raise]``: the view raises (the app answers 500)
- ``[slow]``: a long answer, one piece every 0.2 s
A workflow run with ``{"fail": true}`` in its inputs has a node that fails.

Ids and timestamps are derived from the request, not from a clock or a random source,
so two runs answer the same request with the same bytes.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

APP_KEY_PREFIX = "app-"
CREATED_AT = 1_767_225_600  # the example's frozen clock: 2026-01-01T00:00:00Z
_IDS = uuid.UUID("0f6c3f7e-2a5e-4c55-9d2b-0e8b1f1f6a10")


def _id(body: dict[str, Any], purpose: str) -> str:
    """A UUID that depends only on the request and what it is for."""
    return str(uuid.uuid5(_IDS, purpose + json.dumps(body, sort_keys=True, default=str)))


class ChatFailure(RuntimeError):
    """Raised by a view when the query asks for it, to show an exception in a chat view."""


class ModelUnavailable(RuntimeError):
    """The model provider failed (Dify's InvokeError); its message is Dify's description."""


# What Dify says when its OpenAI-compatible provider's call fails, and what a Code node
# that divides by zero reports.
MODEL_DOWN = "[openai_api_compatible] Error: API request failed with status code 500"
CODE_NODE_ERROR = "ZeroDivisionError: division by zero (line 3)"


def check_app_key(authorization: str | None) -> dict[str, Any] | None:
    """None when the key is one of the example apps' keys; else Dify's 401 error body."""
    from chatspan.examples.dify_records import APPS  # noqa: PLC0415

    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip() in {key for *_, key, _code in APPS}:
        return None
    return unauthorized()


def unauthorized() -> dict[str, Any]:
    return {"code": "unauthorized", "message": "Access token is invalid", "status": 401}


def invalid_param(message: str) -> dict[str, Any]:
    return {"code": "invalid_param", "message": message, "status": 400}


def completion_request_error(message: str) -> dict[str, Any]:
    return {"code": "completion_request_error", "message": message, "status": 400}


def answer_for(query: str) -> str:
    if "[slow]" in query:
        return " ".join(f"step-{i}." for i in range(50))
    return f"You asked: {query.strip()}. Here is a short, helpful answer from the example app."


def _usage(query: str, answer: str) -> dict[str, Any]:
    prompt, completion = len(query.split()), len(answer.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "total_price": "0.0001",
        "currency": "USD",
        "latency": 0.05,
    }


def chat_blocking(
    body: dict[str, Any], mode: str = "chat", *, web_app: bool = False
) -> dict[str, Any]:
    """A blocking answer; the web app's drops the usage, as Dify's does."""
    query = body["query"]
    if "[raise]" in query:
        raise ChatFailure("the model adapter crashed while building the prompt")
    if "[model-down]" in query:
        raise ModelUnavailable(MODEL_DOWN)
    answer = answer_for(query)
    message_id = _id(body, "message")
    return {
        "event": "message",
        "task_id": _id(body, "task"),
        "id": message_id,
        "message_id": message_id,
        "conversation_id": body.get("conversation_id") or _id(body, "conversation"),
        "mode": mode,
        "answer": answer,
        "metadata": {} if web_app else {"usage": _usage(query, answer), "retriever_resources": []},
        "created_at": CREATED_AT,
    }


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event, as Dify writes it."""
    return f"data: {json.dumps(payload)}\n\n".encode()


def common_fields(body: dict[str, Any]) -> dict[str, Any]:
    """What every event of one answer carries, in Dify's order (after "event")."""
    return {
        "conversation_id": body.get("conversation_id") or _id(body, "conversation"),
        "message_id": _id(body, "message"),
        "created_at": CREATED_AT,
        "task_id": _id(body, "task"),
    }


def chat_stream(body: dict[str, Any], *, web_app: bool = False) -> Iterator[bytes]:
    """Dify's SSE stream for a chat: the bytes, in the chunks Dify sends them (the web
    app's ``message_end`` has no usage)."""
    query = body["query"]
    if "[raise]" in query:
        raise ChatFailure("the model adapter crashed while building the prompt")
    answer = answer_for(query)
    common = common_fields(body)
    pieces = _pieces(answer)
    delay = 0.2 if "[slow]" in query else 0.0
    yield b"event: ping\n\n"
    if "[model-down]" in query:
        yield sse({"event": "error", **common, **completion_request_error(MODEL_DOWN)})
        return
    for index, piece in enumerate(pieces):
        if delay:
            time.sleep(delay)
        kind = "agent_message" if index == 1 else "message"
        yield sse(
            {
                "event": kind,
                **common,
                "id": common["message_id"],
                "answer": piece,
                "from_variable_selector": None,
            }
        )
        if index == 2:
            yield sse({"event": "node_retry", **common, "data": {"retry_index": 1}})
            if "[stream-error]" in query:
                yield sse(
                    {
                        "event": "error",
                        **common,
                        "status": 400,
                        "code": "completion_request_error",
                        "message": "the model provider rejected the request: quota exceeded",
                    }
                )
                return
    if "[replace]" in query:
        yield sse({"event": "message_replace", **common, "answer": "This answer was moderated."})
    audio = base64.b64encode(b"\x00\x01" * 4096).decode()
    yield sse({"event": "tts_message", **common, "audio": audio})
    yield sse({"event": "tts_message_end", **common, "audio": ""})
    metadata = {} if web_app else {"usage": _usage(query, answer)}
    yield sse({"event": "message_end", **common, "metadata": metadata})


def _pieces(answer: str) -> list[str]:
    """The answer as a model streams it: a word at a time."""
    pieces = [word + " " for word in answer.split(" ")]
    pieces[-1] = pieces[-1].rstrip()
    return pieces


def advanced_chat_blocking(body: dict[str, Any]) -> dict[str, Any]:
    """An advanced-chat app's blocking answer; a failed run raises as Dify's does."""
    if "[node-fail]" in body["query"]:
        raise ValueError(f"Run failed: {CODE_NODE_ERROR}")
    return chat_blocking(body, mode="advanced-chat")


def advanced_chat_stream(body: dict[str, Any]) -> Iterator[bytes]:
    """An advanced-chat app's stream: a workflow (start, Code, LLM) whose LLM node answers,
    in Dify's order: node events, the answer's pieces, the run's end, the message's end."""
    query = body["query"]
    common = common_fields(body)
    run = {"workflow_run_id": _id(body, "workflow_run")}
    yield sse(
        {
            "event": "workflow_started",
            **common,
            **run,
            "data": {"id": run["workflow_run_id"], "workflow_id": "wf-planner"},
        }
    )
    nodes = [
        ("start-1", "start", "Start"),
        ("code-2", "code", "Parse order"),
        ("llm-3", "llm", "LLM"),
    ]
    for index, (node_id, node_type, title) in enumerate(nodes):
        node = {"node_id": node_id, "node_type": node_type, "title": title, "index": index}
        yield sse({"event": "node_started", **common, **run, "data": node})
        if node_type == "code" and "[node-fail]" in query:
            failed = {"status": "failed", "error": CODE_NODE_ERROR}
            yield sse({"event": "node_finished", **common, **run, "data": {**node, **failed}})
            yield sse({"event": "workflow_finished", **common, **run, "data": failed})
            run_failed = invalid_param(f"Run failed: {CODE_NODE_ERROR}")
            yield sse({"event": "error", **common, **run_failed})
            return
        if node_type == "llm":
            for piece in _pieces(answer_for(query)):
                yield sse(
                    {
                        "event": "message",
                        **common,
                        "id": common["message_id"],
                        "answer": piece + " ",
                    }
                )
        yield sse(
            {"event": "node_finished", **common, **run, "data": {**node, "status": "succeeded"}}
        )
    yield sse({"event": "workflow_finished", **common, **run, "data": {"status": "succeeded"}})
    answer = answer_for(query)
    yield sse({"event": "message_end", **common, "metadata": {"usage": _usage(query, answer)}})


def workflow_blocking(body: dict[str, Any]) -> dict[str, Any]:
    events = [
        json.loads(chunk[6:]) for chunk in workflow_stream(body) if chunk.startswith(b"data:")
    ]
    finished = events[-1]
    return {
        "workflow_run_id": finished["workflow_run_id"],
        "task_id": finished["task_id"],
        "data": finished["data"],
    }


def workflow_stream(body: dict[str, Any]) -> Iterator[bytes]:
    """A three-node workflow: start, an HTTP request node, an LLM node."""
    inputs = body.get("inputs") or {}
    run = {"workflow_run_id": _id(body, "workflow_run"), "task_id": _id(body, "task")}
    yield sse(
        {
            "event": "workflow_started",
            **run,
            "data": {"id": run["workflow_run_id"], "workflow_id": "wf-weather"},
        }
    )
    nodes = [
        ("start-1", "start", "Start"),
        ("http-2", "http-request", "Fetch weather"),
        ("llm-3", "llm", "Write forecast"),
    ]
    for index, (node_id, node_type, title) in enumerate(nodes):
        node = {"node_id": node_id, "node_type": node_type, "title": title, "index": index}
        yield sse({"event": "node_started", **run, "data": node})
        if inputs.get("fail") and node_type == "http-request":
            error = "HTTP request to weather service timed out after 10 s"
            yield sse(
                {
                    "event": "node_finished",
                    **run,
                    "data": {**node, "status": "failed", "error": error, "elapsed_time": 10.0},
                }
            )
            yield sse(
                {
                    "event": "workflow_finished",
                    **run,
                    "data": {
                        "status": "failed",
                        "error": error,
                        "outputs": None,
                        "elapsed_time": 10.1,
                        "total_tokens": 0,
                        "total_steps": 2,
                    },
                }
            )
            return
        yield sse(
            {
                "event": "node_finished",
                **run,
                "data": {**node, "status": "succeeded", "elapsed_time": 0.01},
            }
        )
    city = inputs.get("city", "Berlin")
    outputs = {"answer": f"Tomorrow in {city}: sunny, 21 degrees."}
    yield sse(
        {
            "event": "workflow_finished",
            **run,
            "data": {
                "status": "succeeded",
                "outputs": outputs,
                "elapsed_time": 0.05,
                "total_tokens": 42,
                "total_steps": 3,
            },
        }
    )


def openai_blocking(body: dict[str, Any]) -> dict[str, Any]:
    query = _last_user_text(body)
    answer = answer_for(query)
    usage = _usage(query, answer)
    return {
        "id": "chatcmpl-" + _id(body, "completion").replace("-", "")[:12],
        "object": "chat.completion",
        "model": body.get("model", "example-model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }


def openai_stream(body: dict[str, Any]) -> Iterator[bytes]:
    completion = openai_blocking(body)
    base = {"id": completion["id"], "object": "chat.completion.chunk", "model": completion["model"]}
    for word in completion["choices"][0]["message"]["content"].split(" "):
        yield sse({**base, "choices": [{"index": 0, "delta": {"content": word + " "}}]})
    yield sse(
        {
            **base,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": completion["usage"],
        }
    )
    yield b"data: [DONE]\n\n"


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""
