"""The admin API's response shapes (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class PageInfo(BaseModel):
    page: int = Field(description="the page number asked for (1 when paging by cursor)")
    per_page: int
    has_more: bool
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
    total: int = Field(
        description="matching rows, counted up to 10,000 (1,000 with q); see total_capped"
    )
    total_capped: bool = Field(description="true when more rows match than were counted")


class ChatLog(BaseModel):
    id: str
    created_at: datetime
    trace_id: str
    span_id: str
    trace_url: str | None = None
    app_id: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None
    user_id: str | None = None
    input_text: str | None = None
    output_text: str | None = None
    latency_ms: float | None = None
    time_to_first_token_ms: float | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    status: str
    response_mode: str | None = None
    route: str | None = None
    service_name: str | None = None
    attributes: dict[str, Any] | None = None


class ErrorLog(BaseModel):
    id: str
    created_at: datetime
    trace_id: str
    span_id: str
    trace_url: str | None = None
    type_error: str
    error_message: str | None = None
    stacktrace: str | None = None
    fingerprint: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    conversation_id: str | None = None
    node: str | None = None
    node_type: str | None = None
    route: str | None = None
    service_name: str | None = None
    attributes: dict[str, Any] | None = None


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


class SpoolCounters(BaseModel):
    name: str
    spooled: int
    replayed: int
    dropped: int


class SpoolStatus(BaseModel):
    directory: str
    queues: list[SpoolQueue] = Field(description="batches waiting on disk, per exporter")
    this_process: list[SpoolCounters] = Field(description="this process's own exporters")


class Health(BaseModel):
    status: str
    database: str
    spool: SpoolStatus | None = None
