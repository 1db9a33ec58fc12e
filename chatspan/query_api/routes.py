"""The admin endpoints: chat logs, error logs, error groups, a user's history, statistics."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints

from chatspan import semconv as sc
from chatspan.config import ApiSettings
from chatspan.query_api.auth import Admin, Reader, require_reader_of
from chatspan.query_api.models import (
    ChatLogPage,
    ErrorGroupPage,
    ErrorLogPage,
    LogStats,
    Problem,
)
from chatspan.query_api.state import DatabaseEngine, Settings
from chatspan.store import queries
from chatspan.store.export import MEDIA_TYPES, ExportLines, Format, table_for
from chatspan.store.queries import ChatFilters, Cursor, ErrorFilters, Paging, QueryError, Window

router = APIRouter(
    prefix="/console/api/admin",
    tags=["admin"],
    responses={
        401: {"model": Problem, "description": "no credential, or one that is not valid"},
        403: {"model": Problem, "description": "a valid credential that may not read this"},
        503: {"model": Problem, "description": "the database is unavailable; retry later"},
    },
)

# Filter values: ids and names as the tables hold them (no NUL, at most 512 characters).
Text = Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\x00]*$")]
Search = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
Page = Annotated[int, Query(ge=1, le=100_000, description="page number, from 1")]
PerPage = Annotated[int, Query(ge=1, le=100)]
CursorToken = Annotated[
    str | None, Query(max_length=512, description="next_cursor of the page before")
]
Since = Annotated[datetime | None, Query(description="ISO 8601; without a zone, UTC")]
Until = Annotated[datetime | None, Query(description="ISO 8601, exclusive; without a zone, UTC")]

Handled = Annotated[
    Literal["false", "true", "any"],
    Query(
        description="errors the app recovered from (its span did not fail, or its chat "
        "ended ok): left out by default; true shows only them, any shows all"
    ),
]

MAX_STATS_DAYS = 1000
_P = ParamSpec("_P")
_T = TypeVar("_T")


def chat_filters(
    user_id: Text | None = None,
    app_id: Text | None = None,
    conversation_id: Text | None = None,
    status: sc.ChatStatus | None = None,
    since: Since = None,
    until: Until = None,
    q: Search | None = None,
) -> ChatFilters:
    """The chat filters of the query string (lists and exports take the same)."""
    return ChatFilters(_window(since, until), user_id, app_id, conversation_id, status, q)


def error_filters(
    user_id: Text | None = None,
    app_id: Text | None = None,
    type_error: Text | None = None,
    node: Text | None = None,
    fingerprint: Text | None = None,
    since: Since = None,
    until: Until = None,
    handled: Handled = "false",
) -> ErrorFilters:
    """The error filters of the query string (lists and exports take the same)."""
    return ErrorFilters(
        _window(since, until), user_id, app_id, type_error, node, fingerprint, _handled(handled)
    )


def paging(page: Page = 1, per_page: PerPage = 20, cursor: CursorToken = None) -> Paging:
    """A page by number, or the page after a cursor."""
    if cursor is None:
        return Paging(page=page, per_page=per_page)
    if page != 1:
        raise _unprocessable("page by number or by cursor, not both", "cursor")
    try:
        return Paging(per_page=per_page, cursor=Cursor.decode(cursor))
    except QueryError as error:
        raise _unprocessable(str(error), "cursor") from None


ChatFilterQuery = Annotated[ChatFilters, Depends(chat_filters)]
ErrorFilterQuery = Annotated[ErrorFilters, Depends(error_filters)]
PagingQuery = Annotated[Paging, Depends(paging)]


@router.get("/chat-logs", response_model=ChatLogPage)
def chat_logs(
    database: DatabaseEngine,
    settings: Settings,
    _admin: Admin,
    filters: ChatFilterQuery,
    paging: PagingQuery,
) -> dict[str, Any]:
    """Chats, newest first."""
    with database.connect() as connection:
        result = _run(queries.list_chats, connection, filters, paging)
    return _page_body(settings, result, paging)


@router.get("/error-logs", response_model=ErrorLogPage)
def error_logs(
    database: DatabaseEngine,
    settings: Settings,
    _admin: Admin,
    filters: ErrorFilterQuery,
    paging: PagingQuery,
) -> dict[str, Any]:
    """Errors, newest first."""
    with database.connect() as connection:
        result = _run(queries.list_errors, connection, filters, paging)
    return _page_body(settings, result, paging)


@router.get("/error-groups", response_model=ErrorGroupPage)
def error_groups(
    database: DatabaseEngine,
    settings: Settings,
    _admin: Admin,
    app_id: Text | None = None,
    type_error: Text | None = None,
    since: Since = None,
    until: Until = None,
    sort: Literal["count", "last_seen"] = "count",
    page: Page = 1,
    per_page: PerPage = 20,
    handled: Handled = "false",
) -> dict[str, Any]:
    """Errors grouped by fingerprint: the same error, however many times it happened."""
    filters = ErrorFilters(
        _window(since, until), app_id=app_id, type_error=type_error, handled=_handled(handled)
    )
    with database.connect() as connection:
        groups, has_more = _run(
            queries.error_groups, connection, filters, sort=sort, page=page, per_page=per_page
        )
    for group in groups:
        group["sample_trace_url"] = _trace_url(settings, group["sample_trace_id"])
    return {"data": groups, "page": page, "per_page": per_page, "has_more": has_more}


ExportFormat = Annotated[Format, Query(alias="format")]
EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {media_type.split(";")[0]: {} for media_type in MEDIA_TYPES.values()}}
}


@router.get("/chat-logs/export", response_class=StreamingResponse, responses=EXPORT_RESPONSES)
def export_chat_logs(
    database: DatabaseEngine,
    _admin: Admin,
    filters: ChatFilterQuery,
    export_format: ExportFormat = "csv",
) -> StreamingResponse:
    """Every chat the filters match, oldest first, streamed as CSV or JSON lines."""
    return _export(database, filters, export_format)


@router.get("/error-logs/export", response_class=StreamingResponse, responses=EXPORT_RESPONSES)
def export_error_logs(
    database: DatabaseEngine,
    _admin: Admin,
    filters: ErrorFilterQuery,
    export_format: ExportFormat = "csv",
) -> StreamingResponse:
    """Every error the filters match, oldest first, streamed as CSV or JSON lines."""
    return _export(database, filters, export_format)


def _export(
    database: DatabaseEngine, filters: ChatFilters | ErrorFilters, fmt: Format
) -> StreamingResponse:
    table = table_for(filters).name
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    lines = iter(ExportLines(database, filters, fmt))
    # The query runs now, before the status line: a database that is down is a 503 with
    # Retry-After, not a 200 with an empty body.
    first = next(lines, "")
    return StreamingResponse(
        itertools.chain((first,), lines),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{table}-{stamp}.{fmt}"'},
    )


@router.get("/users/{user_id:path}/chat-history", response_model=ChatLogPage)
def chat_history(
    database: DatabaseEngine,
    settings: Settings,
    who: Reader,
    user_id: Text,
    paging: PagingQuery,
    conversation_id: Text | None = None,
    since: Since = None,
    until: Until = None,
) -> dict[str, Any]:
    """One user's chats, newest first: admins, and the user's own token, may read it."""
    require_reader_of(user_id, who)
    filters = ChatFilters(_window(since, until), user_id=user_id, conversation_id=conversation_id)
    with database.connect() as connection:
        result = _run(queries.list_chats, connection, filters, paging)
    return _page_body(settings, result, paging)


@router.get("/log-stats", response_model=LogStats)
def log_stats(
    database: DatabaseEngine,
    _admin: Admin,
    since: Since = None,
    until: Until = None,
) -> queries.LogStats:
    """Statistics over a window: the last 30 days unless since / until say otherwise."""
    window = _window(since, until)
    try:
        end = window.until or datetime.now(timezone.utc)
        start = window.since or end - timedelta(days=30)
    except OverflowError:
        raise _unprocessable("since / until are out of range", "since") from None
    if start >= end:  # a `since` still to come, with `until` left at now
        raise _unprocessable("since must be earlier than until (default: now)", "since")
    if end - start > timedelta(days=MAX_STATS_DAYS):
        raise _unprocessable(
            f"log-stats covers at most {MAX_STATS_DAYS} days; narrow since / until"
        )
    return _run(queries.log_stats, database, Window(start, end))


def _handled(value: str) -> bool | None:
    return None if value == "any" else value == "true"


def _run(query: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    try:
        return query(*args, **kwargs)
    except QueryError as error:
        raise _unprocessable(str(error)) from None


def _unprocessable(reason: str, *where: str) -> RequestValidationError:
    """A 422 in the same shape as FastAPI's own validation errors, which the schema shows."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", *where), "msg": reason, "input": None}]
    )


def _window(since: datetime | None, until: datetime | None) -> Window:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise _unprocessable("since must be earlier than until", "since")
    return Window(since, until)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    try:
        return (
            moment.replace(tzinfo=timezone.utc)
            if moment.tzinfo is None
            else moment.astimezone(timezone.utc)
        )
    except OverflowError:
        raise _unprocessable(f"{moment.isoformat()} is out of range") from None


def _page_body(settings: ApiSettings, result: queries.Page, paging: Paging) -> dict[str, Any]:
    for row in result.rows:
        row["trace_url"] = _trace_url(settings, row["trace_id"])
    return {
        "data": result.rows,
        "page": paging.page,
        "per_page": paging.per_page,
        "has_more": result.has_more,
        "next_cursor": result.next_cursor,
        "total": result.total,
        "total_capped": result.total_capped,
    }


def _trace_url(settings: ApiSettings, trace_id: str | None) -> str | None:
    template = settings.trace_url_template
    if not template or not trace_id:
        return None
    return template.replace("{trace_id}", trace_id)
