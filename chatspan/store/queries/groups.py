"""Errors grouped by fingerprint: one cause, however many times it happened."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, desc, distinct, func, select

from chatspan.store.queries.filters import ErrorFilters, as_utc, error_conditions
from chatspan.store.tables import error


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
