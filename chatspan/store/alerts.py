"""What the query service's alert rules read, and what they remember announcing.

The rules read recent counts (unhandled errors, chats and failed chats, the failures
counted as the statistics count them) and the fingerprints first seen in a window; what
has been announced is kept in ``chatspan_alert_state`` (a key and when it was noted), so
that a restart neither repeats nor misses an alert and memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, exists, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chatspan.store.queries.filters import Window, unhandled_errors, window_conditions
from chatspan.store.queries.stats import error_rate, failed_chats
from chatspan.store.tables import alert_state, dify_logs, error

FINGERPRINT_KEY = "fingerprint:"  # an announced fingerprint's key: this, then the fingerprint


@dataclass(frozen=True)
class RecentCounts:
    """Errors the app did not recover from, and chats, since a moment."""

    errors: int
    chats: int
    failed: int

    @property
    def error_rate(self) -> float:
        return error_rate(self.failed, self.chats)


@dataclass(frozen=True)
class FirstSeen:
    """The first error of a fingerprint never seen before."""

    fingerprint: str
    type_error: str
    error_message: str | None
    trace_id: str


def recent_counts(connection: Connection, since: datetime) -> RecentCounts:
    window = Window(since)
    errors = connection.scalar(
        select(func.count()).select_from(error).where(*unhandled_errors(window))
    )
    chats, failed = connection.execute(
        select(func.count(), failed_chats()).where(*window_conditions(dify_logs, window))
    ).one()
    return RecentCounts(errors=errors or 0, chats=chats, failed=failed or 0)


def new_fingerprints(connection: Connection, since: datetime, limit: int) -> list[FirstSeen]:
    """The first error of each fingerprint that appeared since `since`: never seen before
    it, and not announced yet (at most `limit`, oldest first)."""
    rank = (
        func.row_number()
        .over(partition_by=error.c.fingerprint, order_by=error.c.created_at)
        .label("rank")
    )
    firsts = (
        select(
            error.c.fingerprint,
            error.c.type_error,
            error.c.error_message,
            error.c.trace_id,
            error.c.created_at,
            rank,
        )
        .where(*unhandled_errors(Window(since)), error.c.fingerprint.is_not(None))
        .subquery()
    )
    seen_before = exists().where(
        error.c.fingerprint == firsts.c.fingerprint, error.c.created_at < since
    )
    announced = exists().where(alert_state.c.key == literal(FINGERPRINT_KEY) + firsts.c.fingerprint)
    rows = connection.execute(
        select(firsts.c.fingerprint, firsts.c.type_error, firsts.c.error_message, firsts.c.trace_id)
        .where(firsts.c.rank == 1, ~seen_before, ~announced)
        .order_by(firsts.c.created_at)
        .limit(limit)
    )
    return [
        FirstSeen(
            fingerprint=row.fingerprint,
            type_error=row.type_error,
            error_message=row.error_message,
            trace_id=row.trace_id,
        )
        for row in rows
    ]


def noted_since(connection: Connection, keys: Iterable[str], since: datetime) -> set[str]:
    """Which of `keys` were noted after `since` (alerts still in their cool-down)."""
    return set(
        connection.scalars(
            select(alert_state.c.key).where(
                alert_state.c.key.in_(list(keys)), alert_state.c.noted_at > since
            )
        )
    )


def note(engine: Engine, keys: Iterable[str], now: datetime, forget_before: datetime) -> None:
    """Note `keys` as announced `now`, and forget what was noted before `forget_before`."""
    rows = [{"key": key, "noted_at": now} for key in keys]
    if not rows:
        return
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(alert_state).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[alert_state.c.key], set_={"noted_at": statement.excluded.noted_at}
    )
    with engine.begin() as connection:
        connection.execute(statement)
        connection.execute(delete(alert_state).where(alert_state.c.noted_at < forget_before))
