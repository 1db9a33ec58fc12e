"""A Dify-shaped app in Dify's process model: gevent, and a worker thread per answer.

Like Dify's api, it monkey-patches the standard library with gevent at import, and it
generates each answer in a thread it starts per request, which calls the model over
HTTP (here the stand-in in fake_model.py). Run it as Dify runs:

    python -m chatspan.examples.fake_model --port 8001 &
    EXAMPLE_MODEL_URL=http://127.0.0.1:8001/v1/completions \\
    OTEL_TRACES_EXPORTER=chatspan_postgres opentelemetry-instrument \\
        gunicorn --worker-class gevent --workers 2 --bind 127.0.0.1:5001 \\
        chatspan.examples.dify_gevent:app

A query with ``[model-down]`` makes the model call fail (an in-stream ``error`` event);
``[raise]`` makes the view raise.
"""

from gevent import monkey

monkey.patch_all()  # first, before anything else is imported, as Dify's app.py does

import os  # noqa: E402
import queue  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
from flask import Flask, Response, jsonify, request  # noqa: E402

from chatspan.examples import dify_replies as replies  # noqa: E402

MODEL_URL = os.environ.get("EXAMPLE_MODEL_URL", "http://127.0.0.1:8001/v1/completions")
MODEL = "example-llm"  # an OpenAI-compatible completions call names its model
END = None  # what the worker puts last


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/v1/chat-messages")
    def chat_messages() -> Any:
        error = replies.check_app_key(request.headers.get("Authorization"))
        if error:
            return jsonify(error), 401
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("query"):
            return jsonify(replies.invalid_param("query is required")), 400
        if "[raise]" in body["query"]:
            raise replies.ChatFailure("the model adapter crashed while building the prompt")
        pieces: queue.Queue = queue.Queue()
        # Dify starts a thread per answer and hands it what it needs; the thread knows
        # nothing of the request or of OpenTelemetry.
        threading.Thread(target=_generate, args=(body["query"], pieces), daemon=True).start()
        common = replies.common_fields(body)
        if body.get("response_mode") == "streaming":
            return Response(_stream(pieces, common), mimetype="text/event-stream")
        answer, failure = _blocking(pieces, common)
        if failure is not None:  # Dify: except InvokeError as e: raise CompletionRequestError
            return jsonify(replies.completion_request_error(failure)), 400
        return jsonify(answer)

    @app.get("/v1/parameters")
    def parameters() -> Any:
        return jsonify({"opening_statement": "Hello from the gevent example"})

    return app


def _generate(query: str, pieces: queue.Queue) -> None:
    """The answer worker: call the model, hand back the text, then the usage."""
    try:
        response = httpx.post(MODEL_URL, json={"model": MODEL, "prompt": query}, timeout=30)
        response.raise_for_status()
        answer = response.json()
        for word in answer["text"].split(" "):
            pieces.put(("text", word + " "))
        pieces.put(("usage", answer["usage"]))
    except httpx.HTTPError as failure:
        pieces.put(("error", f"[openai_api_compatible] Error: the model call failed: {failure}"))
    finally:
        pieces.put(END)


def _stream(pieces: queue.Queue, common: dict[str, Any]) -> Iterator[bytes]:
    while (item := pieces.get()) is not END:
        kind, value = item
        if kind == "text":
            yield replies.sse({"event": "message", "answer": value, **common})
        elif kind == "usage":
            yield replies.sse({"event": "message_end", "metadata": {"usage": value}, **common})
        else:
            yield replies.sse(
                {"event": "error", **common, **replies.completion_request_error(value)}
            )


def _blocking(pieces: queue.Queue, common: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The whole answer, or why the model failed."""
    answer, usage, failure = "", {}, None
    while (item := pieces.get()) is not END:
        kind, value = item
        if kind == "text":
            answer += value
        elif kind == "usage":
            usage = value
        else:
            failure = value
    body = {"event": "message", "answer": answer, "metadata": {"usage": usage}, "mode": "chat"}
    return {**body, **common}, failure


app = create_app()
