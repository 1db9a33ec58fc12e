"""A Dify-shaped FastAPI chat app, the FastAPI twin of ``dify_flask``.

    OTEL_TRACES_EXPORTER=chatspan_postgres opentelemetry-instrument \\
        uvicorn chatspan.examples.dify_fastapi:app
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from chatspan.examples import dify_replies as replies

app = FastAPI(title="Dify-shaped example")
SSE = "text/event-stream"


async def _guarded(request: Request) -> dict[str, Any] | JSONResponse:
    error = replies.check_app_key(request.headers.get("authorization"))
    if error:
        return JSONResponse(error, status_code=401)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JSONResponse(
            replies.invalid_param("the body must be a JSON object"), status_code=400
        )
    return body


@app.post("/v1/chat-messages")
@app.post("/console/api/apps/{app_id}/chat-messages")
async def chat_messages(request: Request) -> Any:
    body = await _guarded(request)
    if isinstance(body, JSONResponse):
        return body
    if not body.get("query"):
        return JSONResponse(replies.invalid_param("query is required"), status_code=400)
    if body.get("response_mode") == "streaming":
        return StreamingResponse(replies.chat_stream(body), media_type=SSE)
    return replies.chat_blocking(body)


@app.post("/v1/workflows/run")
async def workflows_run(request: Request) -> Any:
    body = await _guarded(request)
    if isinstance(body, JSONResponse):
        return body
    if body.get("response_mode") == "streaming":
        return StreamingResponse(replies.workflow_stream(body), media_type=SSE)
    return replies.workflow_blocking(body)


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Any:
    body = await request.json()
    if body.get("stream"):
        return StreamingResponse(replies.openai_stream(body), media_type=SSE)
    return replies.openai_blocking(body)


@app.get("/v1/parameters")
async def parameters() -> dict[str, Any]:
    return {"opening_statement": "Hello from the example app", "user_input_form": []}


@app.get("/v1/boom")
async def boom() -> None:
    raise RuntimeError("the parameters cache is corrupt (entry 4711)")
