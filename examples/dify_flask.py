"""A Dify-shaped Flask chat app: Dify's service API routes and answers, no real model.

Run it uninstrumented::

    flask --app chatspan.examples.dify_flask run

or with chatspan recording every chat and error::

    OTEL_TRACES_EXPORTER=chatspan_postgres opentelemetry-instrument \\
        flask --app chatspan.examples.dify_flask run
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

from chatspan.examples import dify_replies as replies

SSE = "text/event-stream"


def _guarded(handler: Any) -> Any:
    """Dify's checks before a chat: an app key, a JSON body, a query."""
    error = replies.check_app_key(request.headers.get("Authorization"))
    if error:
        return jsonify(error), 401
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(replies.invalid_param("the body must be a JSON object")), 400
    return handler(body)


def create_app() -> Flask:
    """A new app instance (benchmarks compare several side by side)."""
    app = Flask(__name__)

    @app.post("/v1/chat-messages")
    @app.post("/console/api/apps/<app_id>/chat-messages")
    def chat_messages(app_id: str | None = None) -> Any:
        def answer(body: dict[str, Any]) -> Any:
            if not body.get("query"):
                return jsonify(replies.invalid_param("query is required")), 400
            if body.get("response_mode") == "streaming":
                return Response(replies.chat_stream(body), mimetype=SSE)
            return jsonify(replies.chat_blocking(body))

        return _guarded(answer)

    @app.post("/v1/completion-messages")
    def completion_messages() -> Any:
        def answer(body: dict[str, Any]) -> Any:
            body = {
                **body,
                "query": body.get("query") or str((body.get("inputs") or {}).get("query", "")),
            }
            if body.get("response_mode") == "streaming":
                return Response(replies.chat_stream(body), mimetype=SSE)
            return jsonify(replies.chat_blocking(body, mode="completion"))

        return _guarded(answer)

    @app.post("/v1/workflows/run")
    def workflows_run() -> Any:
        def answer(body: dict[str, Any]) -> Any:
            if body.get("response_mode") == "streaming":
                return Response(replies.workflow_stream(body), mimetype=SSE)
            return jsonify(replies.workflow_blocking(body))

        return _guarded(answer)

    @app.post("/v1/chat/completions")
    def chat_completions() -> Any:
        body = request.get_json(silent=True) or {}
        if body.get("stream"):
            return Response(replies.openai_stream(body), mimetype=SSE)
        return jsonify(replies.openai_blocking(body))

    @app.get("/v1/parameters")
    def parameters() -> Any:
        return jsonify({"opening_statement": "Hello from the example app", "user_input_form": []})

    @app.get("/v1/boom")
    def boom() -> Any:
        raise ValueError("the parameters cache is corrupt (entry 4711)")

    return app


app = create_app()
