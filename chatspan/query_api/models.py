"""The admin API's response shapes (they make the OpenAPI document)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, create_model

from chatspan.records import ChatRecord, ErrorRecord


class PageInfo(BaseModel):
    page: int = Field(description="the page number asked for (1 when paging by cursor)")
    per_page: int
    has_more: bool
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
    total: int = Field(
        description="matching rows, counted up to 10,000 (1,000 with q); see total_capped"
    )
    total_capped: bool = Field(description="true when more rows match than were counted")


def _row_model(name: str, record: type) -> type[BaseModel]:
    """The API's model of a row: the record's columns, and a link to the trace.

    Derived from the record (the one declaration of the table's columns), so a column
    added there is served here too.
    """
    hints = typing.get_type_hints(record)
    columns: dict[str, Any] = {}
    for column in dataclasses.fields(record):
        if column.name == "attributes":
            columns[column.name] = (dict[str, Any] | None, None)
        elif column.default is dataclasses.MISSING or column.name == "status":  # always set
            columns[column.name] = (hints[column.name], ...)
        else:
            columns[column.name] = (hints[column.name], None)
    columns["trace_url"] = (str | None, Field(None, description="the trace in a trace viewer"))
    return create_model(name, __doc__=record.__doc__, **columns)


ChatLog = _row_model("ChatLog", ChatRecord)
ErrorLog = _row_model("ErrorLog", ErrorRecord)


class ChatLogPage(PageInfo):
    data: list[ChatLog]


class ErrorLogPage(PageInfo):
    data: list[ErrorLog]


class ErrorGroup(BaseModel):
    fingerprint: str | None
    type_error: str
    count: int
    users_affected: int
    first_seen: datetime
    last_seen: datetime
    sample_id: str | None = None
    sample_message: str | None = None
    sample_stacktrace: str | None = None
    sample_trace_id: str | None = None
    sample_trace_url: str | None = None


class ErrorGroupPage(BaseModel):
    data: list[ErrorGroup]
    page: int
    per_page: int
    has_more: bool


class Totals(BaseModel):
    chats: int
    errors: int
    users: int
    conversations: int


class TypeCount(BaseModel):
    type_error: str
    count: int


class UserCount(BaseModel):
    user_id: str
    chats: int


class Bucket(BaseModel):
    start: datetime
    chats: int
    errors: int


class Percentiles(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class Tokens(BaseModel):
    input: int
    output: int
    total: int


class LogStats(BaseModel):
    since: datetime
    until: datetime
    bucket: str = Field(description="hour for windows up to 48 h, else day")
    totals: Totals
    error_rate: float = Field(description="the share of chats whose status is error")
    errors_by_type: list[TypeCount]
    top_users: list[UserCount]
    series: list[Bucket]
    latency_ms: Percentiles
    tokens: Tokens


class Problem(BaseModel):
    detail: str


class SpoolQueue(BaseModel):
    name: str
    pending_batches: int
    pending_bytes: int
    quarantined_batches: int = Field(
        0, description="files that could not be replayed, kept in quarantine/ for a person"
    )


class SpoolCounters(BaseModel):
    name: str
    spooled: int
    replayed: int
    dropped: int
    quarantined: int = 0


class SpoolStatus(BaseModel):
    directory: str
    queues: list[SpoolQueue] = Field(description="batches waiting on disk, per exporter")
    this_process: list[SpoolCounters] = Field(description="this process's own exporters")


class Health(BaseModel):
    """Only `status` unless the caller sent an admin key."""

    status: str = Field(description="ok, or unavailable when the database does not answer")
    database: str | None = Field(None, description="reachable or unreachable (admins)")
    spool: SpoolStatus | None = Field(None, description="what waits in the spool (admins)")
    settings: list[str] | None = Field(
        None,
        description="chat settings skipped because they were not understood, each naming "
        "its variable (admins)",
    )
