"""Alerts: the query service watches the tables and posts to a webhook.

Three rules, checked every ``CHATSPAN_ALERT_INTERVAL_S`` over the last
``CHATSPAN_ALERT_WINDOW_MINUTES``: more errors than ``CHATSPAN_ALERT_ERRORS``; a share
of failed chats above ``CHATSPAN_ALERT_ERROR_RATE`` (with at least
``CHATSPAN_ALERT_MIN_CHATS`` chats); and an error whose fingerprint was never seen
before. Each alert is a JSON POST with a Slack-compatible ``text``; the same rule is not
sent again within ``CHATSPAN_ALERT_COOLDOWN_MINUTES``, and a new fingerprint is
announced once. Run alerts in one instance of the service.

Errors are text chat users can shape, so what reaches a chat tool is defused: ``&``,
``<`` and ``>`` are escaped in ``text`` (Slack reads ``<!channel>``, ``<@U123>`` and
``<https://...|label>`` as mentions and links), samples are clipped, and at most
``CHATSPAN_ALERT_MAX_PER_CHECK`` posts go out per check and ``CHATSPAN_ALERT_MAX_PER_HOUR``
per hour, the last of them a summary of what was held back. What has been announced is
kept in the database (``chatspan_alert_state``), not in memory, so memory stays flat
however many distinct errors arrive, and a restart repeats nothing.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, Engine

from chatspan.config import AlertSettings, ConfigError
from chatspan.store import alerts as store

_logger = logging.getLogger(__name__)

SAMPLE_CHARS = 300  # of an error message, in a new-error alert
TEXT_CHARS = 500  # of an alert's text
NEW_PER_CHECK = 1_000  # new fingerprints read per check; the rest wait for the next
STATE_KEPT = timedelta(days=30)  # announcements older than this are forgotten
_HOUR = timedelta(hours=1)


@dataclass
class Alert:
    key: str  # what the cool-down is counted by, and the alert_state row it notes
    payload: dict[str, Any]


@dataclass
class Alerter:
    engine: Engine
    settings: AlertSettings
    sent: int = 0
    # Bounded: the times of this hour's posts (at most the hourly cap), and how many
    # alerts of each rule were held back since the last summary.
    _posted_at: deque[datetime] = field(default_factory=deque, init=False, repr=False)
    _held_back: Counter[str] = field(default_factory=Counter, init=False, repr=False)
    _webhook_url: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.settings.webhook_url:
            raise ConfigError("alerts are posted to CHATSPAN_ALERT_WEBHOOK_URL: set it")
        self._webhook_url = self.settings.webhook_url

    def check(self, now: datetime | None = None) -> list[Alert]:
        """Evaluate the rules and post what is due, within the caps; return what was
        posted or tried (a summary of the alerts held back included)."""
        now = now or datetime.now(timezone.utc)
        since = now - timedelta(minutes=self.settings.window_minutes)
        window = {
            "since": since.isoformat(),
            "until": now.isoformat(),
            "window_minutes": self.settings.window_minutes,
        }
        with self.engine.connect() as connection:
            due = self._evaluate(connection, since, now, window)
        budget = self._budget(now)
        if len(due) <= budget and not self._held_back:
            singles, rest = due, []
        else:  # the last post this check may make is a summary of the rest
            cut = max(budget - 1, 0)
            singles, rest = due[:cut], due[cut:]
        attempted: list[Alert] = []
        announced: list[Alert] = []
        for alert in singles:
            attempted.append(alert)
            if self._post(alert, now):
                announced.append(alert)  # a failed post is tried again at the next check
        # Held back: summed up instead, and not announced one by one later either.
        self._held_back.update(alert.payload["alert"] for alert in rest)
        announced += rest
        if self._held_back and len(attempted) < budget:
            summary = self._summary(window)
            attempted.append(summary)
            if self._post(summary, now):
                self._held_back.clear()
        self._note(announced, now)
        return attempted

    # -- the rules -------------------------------------------------------------------

    def _evaluate(
        self, connection: Connection, since: datetime, now: datetime, window: dict[str, Any]
    ) -> list[Alert]:
        """The alerts due now: rules first, then new fingerprints, oldest first; none
        that is in its cool-down or already announced."""
        settings, alerts = self.settings, []
        counts = store.recent_counts(connection, since)
        errors, chats, rate = counts.errors, counts.chats, counts.error_rate
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
        if alerts:
            cooling = store.noted_since(
                connection,
                [alert.key for alert in alerts],
                now - timedelta(minutes=settings.cooldown_minutes),
            )
            alerts = [alert for alert in alerts if alert.key not in cooling]
        if settings.new_fingerprint:
            alerts += [
                _new_error_alert(first, window)
                for first in store.new_fingerprints(connection, since, NEW_PER_CHECK)
            ]
        return alerts

    # -- posting within the caps ---------------------------------------------------------

    def _budget(self, now: datetime) -> int:
        """How many posts this check may make."""
        posted = self._posted_at
        while posted and posted[0] <= now - _HOUR:
            posted.popleft()
        return max(0, min(self.settings.max_per_check, self.settings.max_per_hour - len(posted)))

    def _summary(self, window: dict[str, Any]) -> Alert:
        held = dict(self._held_back)
        total = sum(held.values())
        kinds = ", ".join(f"{count} {name}" for name, count in sorted(held.items()))
        return Alert(
            "summary",
            {
                "alert": "summary",
                "held_back": held,
                "max_per_check": self.settings.max_per_check,
                "max_per_hour": self.settings.max_per_hour,
                **window,
                "text": f"chatspan: {total} more alert(s) not posted one by one (at most "
                f"{self.settings.max_per_check} a check and {self.settings.max_per_hour} "
                f"an hour): {kinds}; see the admin page",
            },
        )

    def _post(self, alert: Alert, now: datetime) -> bool:
        """Post one alert; whether it got through. Every try counts against the caps:
        a webhook that is down is not hammered either."""
        self._posted_at.append(now)
        url = self._webhook_url
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
        self.sent += 1
        return True

    def _note(self, alerts: Sequence[Alert], now: datetime) -> None:
        """Remember what was announced (sent, or summed up), and forget what is old."""
        store.note(self.engine, [alert.key for alert in alerts], now, now - STATE_KEPT)


def _new_error_alert(first: store.FirstSeen, window: dict[str, Any]) -> Alert:
    message = _clip(first.error_message or "", SAMPLE_CHARS)
    return Alert(
        f"{store.FINGERPRINT_KEY}{first.fingerprint}",
        {
            "alert": "new_fingerprint",
            "fingerprint": first.fingerprint,
            "type_error": first.type_error,
            "sample_message": message,
            "trace_id": first.trace_id,
            **window,
            "text": _clip(
                _for_chat_tools(f"chatspan: a new error: {first.type_error}: {message}"),
                TEXT_CHARS,
            ),
        },
    )


def _for_chat_tools(text: str) -> str:
    """Text a chat tool shows as typed: Slack's escaping of &, < and >, so that what an
    error says cannot mention a channel, a user, or hide a link behind a label."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
