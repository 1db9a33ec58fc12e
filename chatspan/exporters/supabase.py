"""``chatspan_supabase``: error rows (and chat rows, if asked) to a Supabase project.

Rows come from the same span mapping as ``chatspan_postgres`` and go to PostgREST,
Supabase's REST API: ``POST {SUPABASE_URL}/rest/v1/<table>?on_conflict=id`` with a JSON
array and ``Prefer: return=minimal,resolution=ignore-duplicates``, so a retried batch
stores nothing twice. Throttling (429), server errors (5xx) and connection failures are
retried with exponential backoff and jitter, honouring ``Retry-After``, within a bound
on the whole export; other refusals (a 400 for an unknown column, a 401 for a wrong
key) are not retried and are logged once with PostgREST's code. The key is never
logged. The exporter runs on the BatchSpanProcessor's thread: the app never waits.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

try:
    import httpx
except ImportError as missing:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the chatspan_supabase exporter needs httpx: pip install 'chatspan[supabase]'"
    ) from missing
from opentelemetry.instrumentation.utils import suppress_instrumentation

from chatspan.config import SpoolSettings, SupabaseSettings
from chatspan.exporters.delivery import Outcome, SpooledSpanExporter
from chatspan.exporters.spool import open_spool
from chatspan.records import ChatRecord, ErrorRecord, SpanData, map_spans

_logger = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


class SupabaseUnavailable(Exception):
    """Supabase could not take a spooled batch yet."""


BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0
PREFER = "return=minimal,resolution=ignore-duplicates"


class SupabaseSpanExporter(SpooledSpanExporter):
    """Sends error rows (and chat rows with ``CHATSPAN_SUPABASE_TABLES=error,dify_logs``).

    Settings: ``SUPABASE_URL``, ``SUPABASE_SERVICE_ROLE_KEY`` (a legacy service_role JWT,
    sent as ``apikey`` and ``Authorization: Bearer``, or an ``sb_secret_`` key, sent as
    ``apikey``), ``CHATSPAN_SUPABASE_TABLES``, ``CHATSPAN_SUPABASE_REQUEST_TIMEOUT_S``,
    ``CHATSPAN_SUPABASE_EXPORT_TIMEOUT_S``. A bad setting raises ConfigError at start;
    ``export`` never raises.
    """

    def __init__(
        self, settings: SupabaseSettings | None = None, spool: SpoolSettings | None = None
    ) -> None:
        self._settings = settings or SupabaseSettings.from_env()
        self._clients: dict[tuple[int, int], httpx.Client] = {}
        self._client_lock = threading.Lock()
        self._refusals_logged: set[tuple[str, int, str]] = set()
        self.destination = f"Supabase at {self._settings.url}"
        super().__init__(
            open_spool(
                spool or SpoolSettings.from_env(), "supabase", self._settings.url, self._replay
            )
        )

    def _close(self) -> None:
        with self._client_lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def _deliver(self, batch: Sequence[SpanData]) -> Outcome:
        """Every table's rows of a batch; the worst outcome of their requests."""
        deadline = time.monotonic() + self._settings.export_timeout_s
        with suppress_instrumentation():  # the exporter's own requests are not spans
            mapped = map_spans(batch)
            records = {"error": mapped.errors, "dify_logs": mapped.chats}
            outcomes = {
                self._send(table, records[table], deadline) for table in self._settings.tables
            }
        for worst in (Outcome.UNAVAILABLE, Outcome.REFUSED):
            if worst in outcomes:
                return worst
        return Outcome.STORED

    def _replay(self, batch: list[SpanData]) -> None:
        """The spool's delivery: raise while Supabase is unavailable. A refused batch
        is let go (logged once): it would be refused again forever."""
        if self._deliver(batch) is Outcome.UNAVAILABLE:
            raise SupabaseUnavailable

    def _send(
        self, table: str, records: Sequence[ChatRecord | ErrorRecord], deadline: float
    ) -> Outcome:
        size = self._settings.batch_rows
        outcome = Outcome.STORED
        for start in range(0, len(records), size):
            chunk = records[start : start + size]
            result = self._post(table, _body(chunk), len(chunk), deadline)
            if result is not Outcome.STORED:
                outcome = result
                if result is Outcome.UNAVAILABLE:
                    break  # out of time or retries: the rest would fail the same way
        return outcome

    def _post(self, table: str, body: bytes, rows: int, deadline: float) -> Outcome:
        """One batch, retried until stored, refused, or out of time."""
        url = f"{self._settings.url}/rest/v1/{table}"
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _logger.error("chatspan: Supabase did not take %d %s row(s) in time", rows, table)
                return Outcome.UNAVAILABLE
            timeout = min(self._settings.request_timeout_s, remaining)
            retry_after: float | None = None
            try:
                response = self._http().post(
                    url,
                    params={"on_conflict": "id"},
                    content=body,
                    headers={"Prefer": PREFER},
                    timeout=timeout,
                )
            except httpx.TransportError as failure:
                reason = f"{type(failure).__name__}"
            else:
                if response.status_code < 300:
                    return Outcome.STORED
                if response.status_code not in RETRYABLE:
                    self._log_refusal(table, rows, response)
                    return Outcome.REFUSED
                reason = f"HTTP {response.status_code}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
            delay = retry_after if retry_after is not None else _backoff(attempt)
            attempt += 1
            if time.monotonic() + delay >= deadline:
                _logger.error(
                    "chatspan: Supabase kept failing (%s) for %d %s row(s); gave up after %d tries",
                    reason,
                    rows,
                    table,
                    attempt,
                )
                return Outcome.UNAVAILABLE
            _logger.warning("chatspan: Supabase answered %s; retrying in %.2f s", reason, delay)
            time.sleep(delay)

    def _log_refusal(self, table: str, rows: int, response: httpx.Response) -> None:
        code, message = _postgrest_error(response)
        key = (table, response.status_code, code)
        level = logging.DEBUG if key in self._refusals_logged else logging.ERROR
        self._refusals_logged.add(key)
        _logger.log(
            level,
            "chatspan: Supabase refused %d %s row(s): HTTP %d %s: %s (not retried: the same "
            "request would be refused again; check the table and the key)",
            rows,
            table,
            response.status_code,
            code,
            message,
        )

    def _http(self) -> httpx.Client:
        # One client per process and thread: made after a fork (a gunicorn worker gets
        # its own), and never shared between the exporter's thread and the spool's.
        key = (os.getpid(), threading.get_ident())
        with self._client_lock:
            client = self._clients.get(key)
            if client is None:
                headers = {"apikey": self._settings.service_key, "Content-Type": "application/json"}
                if self._settings.key_is_jwt:
                    headers["Authorization"] = f"Bearer {self._settings.service_key}"
                client = self._clients[key] = httpx.Client(headers=headers)
            return client


def _body(records: Sequence[ChatRecord | ErrorRecord]) -> bytes:
    """A JSON array whose objects all have the same keys, as PostgREST requires."""
    rows = []
    for record in records:
        row = record.row()
        row["id"] = str(uuid.UUID(row["id"]))
        rows.append(row)
    return json.dumps(rows, default=_json_default, ensure_ascii=False).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__}")


def _backoff(attempt: int) -> float:
    """Exponential, with full jitter, so many exporters do not retry in step."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))  # noqa: S311


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _postgrest_error(response: httpx.Response) -> tuple[str, str]:
    """PostgREST's error code and message (or the gateway's message)."""
    try:
        body = response.json()
    except ValueError:
        return "-", response.text[:200]
    if not isinstance(body, dict):
        return "-", str(body)[:200]
    return str(body.get("code") or "-"), str(body.get("message") or body)[:300]
