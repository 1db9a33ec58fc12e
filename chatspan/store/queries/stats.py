"""Statistics over a window: totals, the error rate, top lists, a time series and
latency percentiles, as typed values (the API's response model is derived from them)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, desc, func, select, text
from sqlalchemy.sql.elements import ColumnElement

from chatspan import semconv as sc
from chatspan.store.queries.filters import QueryError, Window, unhandled_errors, window_conditions
from chatspan.store.tables import dify_logs, error

TOP_USERS = 10
TOP_ERROR_TYPES = 20
HOURLY_UP_TO = timedelta(hours=48)  # longer windows are counted by day


@dataclass(frozen=True)
class LogStats:
    """What the statistics of a window hold (the API's LogStats model is derived from it)."""

    since: datetime
    until: datetime
    bucket: str = field(metadata={"description": "hour for windows up to 48 h, else day"})
    totals: Totals
    error_rate: float = field(metadata={"description": "the share of chats whose status is error"})
    errors_by_type: list[TypeCount]
    top_users: list[UserCount]
    series: list[Bucket]
    latency_ms: Percentiles
    tokens: Tokens


@dataclass(frozen=True)
class Totals:
    """Over the whole window; errors are those the app did not recover from."""

    chats: int
    errors: int
    users: int
    conversations: int


@dataclass(frozen=True)
class Bucket:
    """One hour or day of the window, from `start`."""

    start: datetime
    chats: int
    errors: int


@dataclass(frozen=True)
class TypeCount:
    type_error: str
    count: int


@dataclass(frozen=True)
class UserCount:
    user_id: str
    chats: int


@dataclass(frozen=True)
class Percentiles:
    """Of the chats' latency; None when no chat of the window has one."""

    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True)
class Tokens:
    """Summed over the chats that reported them."""

    input: int
    output: int
    total: int


def failed_chats() -> ColumnElement[Any]:
    """How many of the selected chats failed (status error): the error rate's numerator."""
    return func.sum(case((dify_logs.c.status == sc.STATUS_ERROR, 1), else_=0))


def error_rate(failed: int | None, chats: int) -> float:
    """The share of chats whose status is error (0 when there were none)."""
    return (failed or 0) / chats if chats else 0.0


def log_stats(engine: Engine, window: Window) -> LogStats:
    """Totals, rates, top lists, a time series and latency percentiles over a window.

    Six independent aggregates; on PostgreSQL they run at once on separate connections
    (each a scan of the window), with room to sort in memory.
    """
    since, until = window.since, window.until
    if since is None or until is None:
        raise QueryError("log-stats needs a window with both ends")
    hourly = until - since <= HOURLY_UP_TO
    parts = (_chat_buckets, _error_buckets, _errors_by_type, _users, _conversations, _latency)
    if engine.dialect.name == "postgresql":
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(lambda part: _run_part(engine, part, window, hourly), parts))
    else:
        with engine.connect() as connection:
            results = [part(connection, window, hourly) for part in parts]
    chats, error_buckets, by_type, (user_count, top_users), conversations, latency = results
    series = _fill_series(since, until, hourly, chats.counts, error_buckets)
    chat_count = sum(bucket.chats for bucket in series)
    return LogStats(
        since=since,
        until=until,
        bucket="hour" if hourly else "day",
        totals=Totals(
            chats=chat_count,
            errors=sum(bucket.errors for bucket in series),
            users=user_count,
            conversations=conversations,
        ),
        error_rate=error_rate(chats.failed, chat_count),
        errors_by_type=by_type,
        top_users=top_users,
        series=series,
        latency_ms=latency,
        tokens=chats.tokens,
    )


def _run_part(
    engine: Engine, part: Callable[[Connection, Window, bool], Any], window: Window, hourly: bool
) -> Any:
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL work_mem = '64MB'"))
        return part(connection, window, hourly)


@dataclass(frozen=True)
class _ChatBuckets:
    counts: dict[datetime, int]
    failed: int
    tokens: Tokens


def _chat_buckets(connection: Connection, window: Window, hourly: bool) -> _ChatBuckets:
    bucket = _bucket(connection, dify_logs, hourly)
    rows = connection.execute(
        select(
            bucket,
            func.count(),
            failed_chats(),
            func.sum(dify_logs.c.input_tokens),
            func.sum(dify_logs.c.output_tokens),
            func.sum(dify_logs.c.total_tokens),
        )
        .where(*window_conditions(dify_logs, window))
        .group_by(bucket)
    ).all()
    return _ChatBuckets(
        counts={_parse_bucket(row[0]): row[1] for row in rows},
        failed=sum(row[2] or 0 for row in rows),
        tokens=Tokens(  # PostgreSQL sums BIGINT as numeric
            input=int(sum(row[3] or 0 for row in rows)),
            output=int(sum(row[4] or 0 for row in rows)),
            total=int(sum(row[5] or 0 for row in rows)),
        ),
    )


def _error_buckets(connection: Connection, window: Window, hourly: bool) -> dict[datetime, int]:
    bucket = _bucket(connection, error, hourly)
    rows = connection.execute(
        select(bucket, func.count()).where(*unhandled_errors(window)).group_by(bucket)
    )
    return {_parse_bucket(start): count for start, count in rows}


def _errors_by_type(connection: Connection, window: Window, _hourly: bool) -> list[TypeCount]:
    rows = connection.execute(
        select(error.c.type_error, func.count().label("count"))
        .where(*unhandled_errors(window))
        .group_by(error.c.type_error)
        .order_by(desc("count"), error.c.type_error)
        .limit(TOP_ERROR_TYPES)
    )
    return [TypeCount(type_error=kind, count=count) for kind, count in rows]


def _users(connection: Connection, window: Window, _hourly: bool) -> tuple[int, list[UserCount]]:
    """How many users there were (a window over the groups), and the top users."""
    chats = func.count().label("chats")
    rows = connection.execute(
        select(dify_logs.c.user_id, chats, func.count().over().label("users"))
        .where(*window_conditions(dify_logs, window), dify_logs.c.user_id.is_not(None))
        .group_by(dify_logs.c.user_id)
        .order_by(desc(chats), dify_logs.c.user_id)
        .limit(TOP_USERS)
    ).all()
    top = [UserCount(user_id=row.user_id, chats=row.chats) for row in rows]
    return (rows[0].users if rows else 0), top


def _conversations(connection: Connection, window: Window, _hourly: bool) -> int:
    present = select(dify_logs.c.conversation_id).where(
        *window_conditions(dify_logs, window), dify_logs.c.conversation_id.is_not(None)
    )
    distinct_ids = present.distinct().subquery()
    return connection.scalar(select(func.count()).select_from(distinct_ids)) or 0


def _latency(connection: Connection, window: Window, _hourly: bool) -> Percentiles:
    conditions = [*window_conditions(dify_logs, window), dify_logs.c.latency_ms.is_not(None)]
    fractions = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
    latency = dify_logs.c.latency_ms
    if connection.dialect.name == "postgresql":
        row = connection.execute(
            select(
                *(
                    func.percentile_cont(fraction).within_group(latency).label(name)
                    for name, fraction in fractions.items()
                )
            ).where(*conditions)
        ).one()
        return Percentiles(**{name: row._mapping[name] for name in fractions})
    # SQLite has no percentile function: the value at the rank (nearest rank).
    values = connection.scalar(select(func.count()).select_from(dify_logs).where(*conditions))
    if not values:
        return Percentiles(p50=None, p95=None, p99=None)
    at_rank = {}
    for name, fraction in fractions.items():
        rank = max(0, min(values - 1, round(fraction * (values - 1))))
        at_rank[name] = connection.scalar(
            select(latency).where(*conditions).order_by(latency).limit(1).offset(rank)
        )
    return Percentiles(**at_rank)


def _fill_series(
    since: datetime,
    until: datetime,
    hourly: bool,
    chats: dict[datetime, int],
    errors: dict[datetime, int],
) -> list[Bucket]:
    """Chats and errors per hour or day, every bucket of the window present."""
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    first = since.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    if not hourly:
        first = first.replace(hour=0)
    # Counted, not stepped past the end: a window ending in year 9999 has no bucket after it.
    buckets = -((first - until) // step)
    starts = (first + i * step for i in range(buckets))
    return [Bucket(start=s, chats=chats.get(s, 0), errors=errors.get(s, 0)) for s in starts]


def _bucket(connection: Connection, table: Table, hourly: bool) -> Any:
    created = table.c.created_at
    if connection.dialect.name == "postgresql":
        return func.date_trunc("hour" if hourly else "day", func.timezone("UTC", created))
    return func.strftime("%Y-%m-%d %H:00:00" if hourly else "%Y-%m-%d 00:00:00", created)


def _parse_bucket(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
