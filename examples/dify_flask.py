"""A Dify-shaped Flask chat app: Dify's routes, auth and answers, no real model.

Like Dify's api it answers the service API (``/v1/...``, app keys), the published web
app (``/api/...``, passports from ``GET /api/passport``) and the console debugger
(``/console/api/apps/<app_id>/...``, a token from ``POST /console/api/login``), loads
the app and end user behind each credential from its database (``dify_records``), and
turns errors into Dify's JSON error bodies. Run it uninstrumented::

    flask --app chatspan.examples.dify_flask run

or with chatspan recording every chat and error::

    OTEL_TRACES_EXPORTER=chatspan_postgres opentelemetry-instrument \\
        flask --app chatspan.examples.dify_flask run
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from chatspan.examples import dify_records as records
from chatspan.examples import dify_replies as replies

SSE = "text/event-stream"


class DifyError(HTTPException):
    """An error Dify answers with its JSON body ``{"code", "message", "status"}``."""

    error_code = "internal_server_error"

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        body = {"code": self.error_code, "message": self.description, "status": self.code}
        return Response(json.dumps(body), self.code, mimetype="application/json")


class Unauthorized(DifyError):
    code, error_code = 401, "unauthorized"
    description = "Access token is invalid"


class InvalidParam(DifyError):
    code, error_code = 400, "invalid_param"


class CompletionRequestError(DifyError):
    code, error_code = 400, "completion_request_error"


def _answer_chat(app: records.App, body: dict[str, Any], *, web_app: bool = False) -> Any:
    """A chat or advanced-chat app's answer, blocking or streamed (Dify's chat-messages)."""
    if not body.get("query"):
        raise InvalidParam("query is required")
    streaming = body.get("response_mode") == "streaming"
    if app.mode == "advanced-chat":
        if streaming:
            return Response(replies.advanced_chat_stream(body), mimetype=SSE)
        return jsonify(replies.advanced_chat_blocking(body))
    conversation = replies.common_fields(body)["conversation_id"]
    records.record_message(app, conversation, body["query"])
    if streaming:
        return Response(replies.chat_stream(body, web_app=web_app), mimetype=SSE)
    try:
        return jsonify(replies.chat_blocking(body, web_app=web_app))
    except replies.ModelUnavailable as failure:  # Dify: except InvokeError as e: raise ...
        raise CompletionRequestError(str(failure)) from None


def _answer_completion(body: dict[str, Any]) -> Any:
    query = body.get("query") or str((body.get("inputs") or {}).get("query", ""))
    body = {**body, "query": query}
    if body.get("response_mode") == "streaming":
        return Response(replies.chat_stream(body), mimetype=SSE)
    return jsonify(replies.chat_blocking(body, mode="completion"))


def _answer_workflow(body: dict[str, Any]) -> Any:
    if body.get("response_mode") == "streaming":
        return Response(replies.workflow_stream(body), mimetype=SSE)
    return jsonify(replies.workflow_blocking(body))


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidParam("the body must be a JSON object")
    return body


def _service_api(answer: Callable[[records.App, dict[str, Any]], Any]) -> Any:
    """Dify's validate_app_token: the key's app, and the end user named by `user`."""
    app = records.app_for_key(request.headers.get("Authorization"))
    if app is None:
        raise Unauthorized()
    body = _json_body()
    if body.get("user"):
        records.end_user_for(app, str(body["user"]))
    return answer(app, body)


def _web_app(answer: Callable[[records.App, dict[str, Any]], Any]) -> Any:
    """Dify's validate_jwt_token: the passport's app and end user."""
    found = records.web_app_user(request.headers.get("Authorization"))
    if found is None:
        raise Unauthorized()
    app, _end_user = found
    return answer(app, _json_body())


def create_app() -> Flask:
    """A new app instance (benchmarks compare several side by side)."""
    records.seed()
    app = Flask(__name__)
    app.teardown_appcontext(lambda _error: records.finish_request())

    @app.errorhandler(ValueError)
    def value_error(error: ValueError) -> Any:
        """Dify's API answers a ValueError as 400 invalid_param with its message."""
        return jsonify(replies.invalid_param(str(error))), 400

    @app.post("/v1/chat-messages")
    def chat_messages() -> Any:
        return _service_api(_answer_chat)

    @app.post("/v1/completion-messages")
    def completion_messages() -> Any:
        return _service_api(lambda _app, body: _answer_completion(body))

    @app.post("/v1/workflows/run")
    def workflows_run() -> Any:
        return _service_api(lambda _app, body: _answer_workflow(body))

    @app.get("/api/passport")
    def web_app_passport() -> Any:
        token = records.passport(request.headers.get("X-App-Code"))
        if token is None:
            raise Unauthorized()
        return jsonify({"access_token": token})

    @app.post("/api/chat-messages")
    def web_app_chat_messages() -> Any:
        return _web_app(lambda app, body: _answer_chat(app, body, web_app=True))

    @app.post("/api/workflows/run")
    def web_app_workflows_run() -> Any:
        return _web_app(lambda _app, body: _answer_workflow(body))

    @app.post("/console/api/login")
    def console_login() -> Any:
        body = _json_body()
        token = records.console_login(str(body.get("email")), str(body.get("password")))
        if token is None:
            raise Unauthorized("Invalid email or password")
        return jsonify({"result": "success", "data": {"access_token": token}})

    @app.post("/console/api/apps/<app_id>/chat-messages")
    def console_chat_messages(app_id: str) -> Any:
        app_model = records.console_app(request.headers.get("Authorization"), app_id)
        if app_model is None:
            raise Unauthorized()
        return _answer_chat(app_model, _json_body())

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
        raise RuntimeError("the parameters cache is corrupt (entry 4711)")

    return app


app = create_app()
