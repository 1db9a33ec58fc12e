"""Read queries behind the admin API: lists with filters and two kinds of paging, error
groups, and statistics, on PostgreSQL and SQLite alike.

Lists are newest first, ordered by (created_at, id). They page by number (OFFSET: easy,
but rows shift when new ones arrive) and by cursor (keyset on (created_at, id): stable
while rows are inserted, and as fast on page 10,000 as on page 1).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    case,
    desc,
    distinct,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
)

from chatspan import semconv as sc
from chatspan.store.tables import dify_logs, error

COUNT_CAP = 10_000  # counting further would be slow on large tables; `total` stops here
SEARCH_COUNT_CAP = 1_000  # text search tests every row it counts: stop sooner
TOP_USERS = 10


class QueryError(ValueError):
    """A parameter the query cannot use (a malformed cursor, an empty window)."""


@dataclass(frozen=True)
class Cursor:
    """A position in a newest-first list: the last row seen."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, row_id = json.loads(raw)
            moment = datetime.fromisoformat(created_at)
            # In UTC, as issued; a forged offset at the edge of time has no UTC moment.
            moment = (
                moment.replace(tzinfo=timezone.utc)
                if moment.tzinfo is None
                else moment.astimezone(timezone.utc)
            )
            parsed_id = str(uuid.UUID(str(row_id)))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as error:
            raise QueryError(f"cursor is not one this service issued: {error}") from None
        return cls(moment, parsed_id)


@dataclass(frozen=True)
class Paging:
    page: int = 1
    per_page: int = 20
    cursor: Cursor | None = None


@dataclass
class Page:
    rows: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None
    total: int
    total_capped: bool


@dataclass(frozen=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ChatFilters:
    window: Window = field(default_factory=Window)
    user_id: str | None = None
    app_id: str | None = None
    conversation_id: str | None = None
    status: str | None = None
    q: str | None = None


@dataclass(frozen=True)
class ErrorFilters:
    window: Window = field(default_factory=Window)
    user_id: str | None = None
    app_id: str | None = None
    type_error: str | None = None
    node: str | None = None
    fingerprint: str | None = None
    handled: bool | None = False  # errors the app recovered from; None: both kinds


def chat_conditions(filters: ChatFilters) -> list[Any]:
    """The WHERE conditions of a chat filter (lists and exports share them)."""
    table = dify_logs
    conditions = _window(table, filters.window) + _equal(
        table,
        user_id=filters.user_id,
        app_id=filters.app_id,
        conversation_id=filters.conversation_id,
        status=filters.status,
    )
    if filters.q:
        pattern = "%" + _escape_like(filters.q) + "%"
        conditions.append(
            or_(
                table.c.input_text.ilike(pattern, escape="\\"),
                table.c.output_text.ilike(pattern, escape="\\"),
            )
        )
    return conditions


def error_conditions(filters: ErrorFilters) -> list[Any]:
    return _window(error, filters.window) + _equal(
        error,
        user_id=filters.user_id,
        app_id=filters.app_id,
        type_error=filters.type_error,
        node=filters.node,
        fingerprint=filters.fingerprint,
        handled=filters.handled,
    )


def list_chats(connection: Connection, filters: ChatFilters, paging: Paging) -> Page:
    cap = SEARCH_COUNT_CAP if filters.q else COUNT_CAP
    return _page(connection, dify_logs, chat_conditions(filters), paging, count_cap=cap)


def list_errors(connection: Connection, filters: ErrorFilters, paging: Paging) -> Page:
    return _page(connection, error, error_conditions(filters), paging)


def error_groups(
    connection: Connection,
    filters: ErrorFilters,
    *,
    sort: str = "count",
    page: int = 1,
    per_page: int = 20,
) -> tuple[list[dict[str, Any]], bool]:
    """Errors grouped by fingerprint, with the newest occurrence as the sample."""
    conditions = error_conditions(filters)
    count = func.count().label("count")
    last_seen = func.max(error.c.created_at).label("last_seen")
    groups = (
        select(
            error.c.fingerprint,
            func.min(error.c.type_error).label("type_error"),
            count,
            func.count(distinct(error.c.user_id)).label("users_affected"),
            func.min(error.c.created_at).label("first_seen"),
            last_seen,
        )
        .where(*conditions)
        .group_by(error.c.fingerprint)
        .order_by(desc(count if sort == "count" else last_seen), error.c.fingerprint)
        .limit(per_page + 1)
        .offset((page - 1) * per_page)
    )
    rows = [dict(row._mapping) for row in connection.execute(groups)]
    has_more = len(rows) > per_page
    rows = rows[:per_page]
    samples = _latest_per_fingerprint(connection, [r["fingerprint"] for r in rows], conditions)
    for row in rows:
        sample = samples.get(row["fingerprint"], {})
        row["sample_id"] = sample.get("id")
        row["sample_message"] = sample.get("error_message")
        row["sample_stacktrace"] = sample.get("stacktrace")
        row["sample_trace_id"] = sample.get("trace_id")
        row["first_seen"] = as_utc(row["first_seen"])
        row["last_seen"] = as_utc(row["last_seen"])
    return rows, has_more


def log_stats(engine: Engine, window: Window) -> dict[str, Any]:
    """Totals, rates, top lists, a time series and latency percentiles over a window.

    Six independent aggregates; on PostgreSQL they run at once on separate connections
    (each a scan of the window), with room to sort in memory.
    """
    if window.since is None or window.until is None:
        raise QueryError("log-stats needs a window with both ends")
    hourly = window.until - window.since <= timedelta(hours=48)
    parts = [_chat_buckets, _error_buckets, _errors_by_type, _users, _conversations, _latency]
    if engine.dialect.name == "postgresql":
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(lambda part: _run_part(engine, part, window, hourly), parts))
    else:
        with engine.connect() as connection:
            results = [part(connection, window, hourly) for part in parts]
    found: dict[str, Any] = {}
    for result in results:
        found.update(result)
    series = _fill_series(window, hourly, found.pop("chat_buckets"), found.pop("error_buckets"))
    chats = sum(bucket["chats"] for bucket in series)
    return {
        "since": window.since,
        "until": window.until,
        "bucket": "hour" if hourly else "day",
        "totals": {
            "chats": chats,
            "errors": sum(bucket["errors"] for bucket in series),
            "users": found["users"],
            "conversations": found["conversations"],
        },
        "error_rate": found["failed"] / chats if chats else 0.0,
        "errors_by_type": found["errors_by_type"],
        "top_users": found["top_users"],
        "series": series,
        "latency_ms": found["latency_ms"],
        "tokens": found["tokens"],
    }


def _run_part(engine: Engine, part: Any, window: Window, hourly: bool) -> dict[str, Any]:
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL work_mem = '64MB'"))
        return part(connection, window, hourly)


def _chat_buckets(connection: Connection, window: Window, hourly: bool) -> dict[str, Any]:
    bucket = _bucket(connection, dify_logs, hourly)
    rows = connection.execute(
        select(
            bucket,
            func.count(),
            func.sum(case((dify_logs.c.status == sc.STATUS_ERROR, 1), else_=0)),
            func.sum(dify_logs.c.input_tokens),
            func.sum(dify_logs.c.output_tokens),
            func.sum(dify_logs.c.total_tokens),
        )
        .where(*_window(dify_logs, window))
        .group_by(bucket)
    ).all()
    return {
        "chat_buckets": {_parse_bucket(row[0]): row[1] for row in rows},
        "failed": sum(row[2] or 0 for row in rows),
        "tokens": {
            "input": sum(row[3] or 0 for row in rows),
            "output": sum(row[4] or 0 for row in rows),
            "total": sum(row[5] or 0 for row in rows),
        },
    }


def _error_buckets(connection: Connection, window: Window, hourly: bool) -> dict[str, Any]:
    bucket = _bucket(connection, error, hourly)
    rows = connection.execute(
        select(bucket, func.count()).where(*_unhandled_errors(window)).group_by(bucket)
    )
    return {"error_buckets": {_parse_bucket(start): count for start, count in rows}}


def _errors_by_type(connection: Connection, window: Window, _hourly: bool) -> dict[str, Any]:
    rows = connection.execute(
        select(error.c.type_error, func.count().label("count"))
        .where(*_unhandled_errors(window))
        .group_by(error.c.type_error)
        .order_by(desc("count"), error.c.type_error)
        .limit(20)
    )
    return {"errors_by_type": [{"type_error": t, "count": n} for t, n in rows]}


def _users(connection: Connection, window: Window, _hourly: bool) -> dict[str, Any]:
    """The top users, and (a window over the groups) how many users there were."""
    chats = func.count().label("chats")
    rows = connection.execute(
        select(dify_logs.c.user_id, chats, func.count().over().label("users"))
        .where(*_window(dify_logs, window), dify_logs.c.user_id.is_not(None))
        .group_by(dify_logs.c.user_id)
        .order_by(desc(chats), dify_logs.c.user_id)
        .limit(TOP_USERS)
    ).all()
    return {
        "users": rows[0].users if rows else 0,
        "top_users": [{"user_id": row.user_id, "chats": row.chats} for row in rows],
    }


def _conversations(connection: Connection, window: Window, _hourly: bool) -> dict[str, Any]:
    present = select(dify_logs.c.conversation_id).where(
        *_window(dify_logs, window), dify_logs.c.conversation_id.is_not(None)
    )
    distinct_ids = present.distinct().subquery()
    return {"conversations": connection.scalar(select(func.count()).select_from(distinct_ids))}


def _latency(connection: Connection, window: Window, _hourly: bool) -> dict[str, Any]:
    return {"latency_ms": _percentiles(connection, _window(dify_logs, window))}


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; chatspan stores UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


# -- building blocks ------------------------------------------------------------------


def _window(table: Table, window: Window) -> list[Any]:
    # Bounds in UTC: SQLite compares the stored text, which is UTC without a zone.
    conditions = []
    if window.since is not None:
        conditions.append(table.c.created_at >= window.since.astimezone(timezone.utc))
    if window.until is not None:
        conditions.append(table.c.created_at < window.until.astimezone(timezone.utc))
    return conditions


def _unhandled_errors(window: Window) -> list[Any]:
    """Statistics count the errors the app did not recover from."""
    return error_conditions(ErrorFilters(window))


def _equal(table: Table, **values: Any) -> list[Any]:
    return [table.c[name] == value for name, value in values.items() if value is not None]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _page(
    connection: Connection,
    table: Table,
    conditions: list[Any],
    paging: Paging,
    count_cap: int = COUNT_CAP,
) -> Page:
    order = (table.c.created_at.desc(), table.c.id.desc())
    query: Select = select(table).where(*conditions).order_by(*order).limit(paging.per_page + 1)
    if paging.cursor is not None:
        query = query.where(
            tuple_(table.c.created_at, table.c.id)
            < tuple_(
                literal(paging.cursor.created_at.astimezone(timezone.utc), table.c.created_at.type),
                literal(paging.cursor.id, table.c.id.type),
            )
        )
    else:
        query = query.offset((paging.page - 1) * paging.per_page)
    rows = [dict(row._mapping) for row in connection.execute(query)]
    has_more = len(rows) > paging.per_page
    rows = rows[: paging.per_page]
    for row in rows:
        row["created_at"] = as_utc(row["created_at"])
    last = rows[-1] if rows else None
    capped = select(literal_column("1")).select_from(table).where(*conditions).limit(count_cap + 1)
    total = connection.scalar(select(func.count()).select_from(capped.subquery()))
    return Page(
        rows=rows,
        has_more=has_more,
        next_cursor=Cursor(last["created_at"], last["id"]).encode() if has_more and last else None,
        total=min(total, count_cap),
        total_capped=total > count_cap,
    )


def _latest_per_fingerprint(
    connection: Connection, fingerprints: list[str], conditions: list[Any]
) -> dict[str, dict[str, Any]]:
    if not fingerprints:
        return {}
    newest = (
        func.row_number()
        .over(
            partition_by=error.c.fingerprint,
            order_by=(error.c.created_at.desc(), error.c.id.desc()),
        )
        .label("newest")
    )
    ranked = (
        select(
            error.c.fingerprint,
            error.c.id,
            error.c.error_message,
            error.c.stacktrace,
            error.c.trace_id,
            newest,
        )
        .where(*conditions, error.c.fingerprint.in_(fingerprints))
        .subquery()
    )
    rows = connection.execute(select(ranked).where(ranked.c.newest == 1))
    return {row.fingerprint: dict(row._mapping) for row in rows}


def _fill_series(
    window: Window,
    hourly: bool,
    chats: dict[datetime, int],
    errors: dict[datetime, int],
) -> list[dict[str, Any]]:
    """Chats and errors per hour or day, every bucket of the window present."""
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    first = window.since.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    if not hourly:
        first = first.replace(hour=0)
    # Counted, not stepped past the end: a window ending in year 9999 has no bucket after it.
    buckets = -((first - window.until) // step)
    starts = (first + i * step for i in range(buckets))
    return [{"start": s, "chats": chats.get(s, 0), "errors": errors.get(s, 0)} for s in starts]


def _bucket(connection: Connection, table: Table, hourly: bool) -> Any:
    created = table.c.created_at
    if connection.dialect.name == "postgresql":
        return func.date_trunc("hour" if hourly else "day", func.timezone("UTC", created))
    return func.strftime("%Y-%m-%d %H:00:00" if hourly else "%Y-%m-%d 00:00:00", created)


def _parse_bucket(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _percentiles(connection: Connection, conditions: list[Any]) -> dict[str, Any]:
    fractions = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
    latency = dify_logs.c.latency_ms
    if connection.dialect.name == "postgresql":
        row = connection.execute(
            select(
                *(
                    func.percentile_cont(fraction).within_group(latency).label(name)
                    for name, fraction in fractions.items()
                )
            ).where(*conditions, latency.is_not(None))
        ).one()
        return {name: row._mapping[name] for name in fractions}
    # SQLite has no percentile function: the value at the rank (nearest rank).
    present = [*conditions, latency.is_not(None)]
    values = connection.scalar(select(func.count()).select_from(dify_logs).where(*present))
    if not values:
        return dict.fromkeys(fractions)
    result = {}
    for name, fraction in fractions.items():
        rank = max(0, min(values - 1, round(fraction * (values - 1))))
        result[name] = connection.scalar(
            select(latency).where(*present).order_by(latency).limit(1).offset(rank)
        )
    return result
