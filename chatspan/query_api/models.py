"""The admin API's response shapes (they make the OpenAPI document)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from types import GenericAlias
from typing import Any

from pydantic import BaseModel, Field, create_model

from chatspan.records import ChatRecord, ErrorRecord
from chatspan.store.queries import stats


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


def _page_model(name: str, row: type[BaseModel]) -> type[BaseModel]:
    """A page of rows: what PageInfo says, and the rows as `data`."""
    rows: Any = GenericAlias(list, (row,))  # list[row], of a model made at run time
    return create_model(name, __base__=PageInfo, data=(rows, ...))


ChatLogPage = _page_model("ChatLogPage", _row_model("ChatLog", ChatRecord))
ErrorLogPage = _page_model("ErrorLogPage", _row_model("ErrorLog", ErrorRecord))


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


def _response_model(shape: type, models: dict[type, type[BaseModel]]) -> type[BaseModel]:
    """The API's model of a value the store returns, derived from its dataclass (nested
    dataclasses become models of their own, named as they are); field descriptions come
    from the fields' metadata."""
    hints = typing.get_type_hints(shape)

    def model_type(hint: Any) -> Any:
        if dataclasses.is_dataclass(hint):
            return _response_model(typing.cast(type, hint), models)
        if typing.get_origin(hint) is list:
            return GenericAlias(list, (model_type(typing.get_args(hint)[0]),))
        return hint

    if shape not in models:
        fields: dict[str, Any] = {
            field.name: (model_type(hints[field.name]), Field(**field.metadata))
            for field in dataclasses.fields(shape)
        }
        models[shape] = create_model(shape.__name__, **fields)
    return models[shape]


LogStats = _response_model(stats.LogStats, {})


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
