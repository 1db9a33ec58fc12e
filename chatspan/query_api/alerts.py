"""Alerts: the query service watches the tables and posts to a webhook.

Three rules, checked every ``CHATSPAN_ALERT_INTERVAL_S`` over the last
``CHATSPAN_ALERT_WINDOW_MINUTES``: more errors than ``CHATSPAN_ALERT_ERRORS``; a share
of failed chats above ``CHATSPAN_ALERT_ERROR_RATE`` (with at least
``CHATSPAN_ALERT_MIN_CHATS`` chats); and an error whose fingerprint was never seen
before. Each alert is a JSON POST with a Slack-compatible ``text``; the same alert (the
same rule, or the same fingerprint) is not sent again within
``CHATSPAN_ALERT_COOLDOWN_MINUTES``. Run alerts in one instance of the service.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, case, false, func, select

from chatspan import semconv as sc
from chatspan.config import AlertSettings
from chatspan.store.tables import dify_logs, error

_logger = logging.getLogger(__name__)


@dataclass
class Alert:
    key: str  # what the cool-down is counted by
    payload: dict[str, Any]


@dataclass
class Alerter:
    engine: Engine
    settings: AlertSettings
    known_fingerprints: set[str] | None = None
    last_sent: dict[str, float] = field(default_factory=dict)
    sent: int = 0

    def check(self, now: datetime | None = None) -> list[Alert]:
        """Evaluate the rules, post what is due, and return what was posted."""
        now = now or datetime.now(timezone.utc)
        since = now - timedelta(minutes=self.settings.window_minutes)
        due = [a for a in self._evaluate(since, now) if self._cooled_down(a.key)]
        for alert in due:
            if self._post(alert):
                self.last_sent[alert.key] = time.monotonic()
                self.sent += 1
        return due

    def _evaluate(self, since: datetime, now: datetime) -> list[Alert]:
        settings, alerts = self.settings, []
        window = {
            "since": since.isoformat(),
            "until": now.isoformat(),
            "window_minutes": settings.window_minutes,
        }
        with self.engine.connect() as connection:
            errors = connection.scalar(
                select(func.count())
                .select_from(error)
                .where(error.c.created_at >= since, error.c.handled == false())
            )
            chats, failed = connection.execute(
                select(
                    func.count(),
                    func.sum(case((dify_logs.c.status == sc.STATUS_ERROR, 1), else_=0)),
                ).where(dify_logs.c.created_at >= since)
            ).one()
            fresh = self._new_fingerprints(connection, since) if settings.new_fingerprint else []
        if settings.errors > 0 and errors > settings.errors:
            alerts.append(
                Alert(
                    "errors",
                    {
                        "alert": "errors",
                        "value": errors,
                        "threshold": settings.errors,
                        **window,
                        "text": f"chatspan: {errors} errors in the last "
                        f"{settings.window_minutes:g} min (threshold {settings.errors})",
                    },
                )
            )
        rate = (failed or 0) / chats if chats else 0.0
        if settings.error_rate > 0 and chats >= settings.min_chats and rate > settings.error_rate:
            alerts.append(
                Alert(
                    "error_rate",
                    {
                        "alert": "error_rate",
                        "value": round(rate, 4),
                        "threshold": settings.error_rate,
                        "chats": chats,
                        **window,
                        "text": f"chatspan: {rate:.0%} of {chats} chats failed in the last "
                        f"{settings.window_minutes:g} min (threshold {settings.error_rate:.0%})",
                    },
                )
            )
        for row in fresh:
            alerts.append(
                Alert(
                    f"fingerprint:{row.fingerprint}",
                    {
                        "alert": "new_fingerprint",
                        "fingerprint": row.fingerprint,
                        "type_error": row.type_error,
                        "sample_message": row.error_message,
                        "trace_id": row.trace_id,
                        **window,
                        "text": _clip(
                            f"chatspan: a new error: {row.type_error}: {row.error_message}"
                        ),
                    },
                )
            )
        return alerts

    def _new_fingerprints(self, connection: Any, since: datetime) -> list[Any]:
        """Fingerprints first seen in the window. The first check only learns what exists."""
        if self.known_fingerprints is None:
            self.known_fingerprints = set(
                connection.scalars(
                    select(error.c.fingerprint).where(error.c.fingerprint.is_not(None)).distinct()
                )
            )
            return []
        # The first error of each fingerprint in the window: one row per fingerprint.
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
            .where(
                error.c.created_at >= since,
                error.c.fingerprint.is_not(None),
                error.c.handled == false(),
            )
            .subquery()
        )
        recent = connection.execute(
            select(
                firsts.c.fingerprint, firsts.c.type_error, firsts.c.error_message, firsts.c.trace_id
            )
            .where(firsts.c.rank == 1)
            .order_by(firsts.c.created_at)
        ).all()
        fresh = [row for row in recent if row.fingerprint not in self.known_fingerprints]
        self.known_fingerprints |= {row.fingerprint for row in fresh}
        return fresh

    def _cooled_down(self, key: str) -> bool:
        last = self.last_sent.get(key)
        return last is None or time.monotonic() - last >= self.settings.cooldown_minutes * 60

    def _post(self, alert: Alert) -> bool:
        url = self.settings.webhook_url
        try:
            response = httpx.post(url, json=alert.payload, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as failure:
            _logger.warning(
                "chatspan: could not send the %s alert to %s: %s",
                alert.payload["alert"],
                urlsplit(url).hostname,
                type(failure).__name__,
            )
            return False
        _logger.info("chatspan: sent the %s alert", alert.payload["alert"])
        return True


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
