"""Outage scenarios: an instrumented example app under steady chat load while its
destination (PostgreSQL, or the Supabase stand-in) refuses for a while. Shared by the
fault tests and bench/outage.py."""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from servers import APP_KEY, RunningApp

ERROR_EVERY = 7  # one chat in seven has an error event mid-stream


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, round(0.99 * len(ordered)) - 1)] * 1000 if ordered else float("nan")

    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


class Load:
    """Chats sent at a steady pace by a few threads; every chat has its own user id."""

    def __init__(self, base_url: str, run: str, rate_per_s: float = 20, threads: int = 2) -> None:
        self.base_url = base_url
        self.run = run
        self.interval = threads / rate_per_s
        self.threads = threads
        self.phase = Phase("warm-up")
        self.phases = [self.phase]
        self.sent: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._count = 0

    def start(self) -> None:
        self._stop.clear()
        self._workers = [
            threading.Thread(target=self._send, daemon=True) for _ in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def next_phase(self, name: str) -> None:
        self.phase = Phase(name)
        self.phases.append(self.phase)

    def expected_errors(self) -> int:
        return sum(1 for user in self.sent if int(user.rsplit("-", 1)[1]) % ERROR_EVERY == 0)

    def _send(self) -> None:
        with httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {APP_KEY}"}, timeout=30
        ) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                with self._lock:
                    number = self._count
                    self._count += 1
                user = f"{self.run}-{number}"
                query = f"question {number}" + (
                    " [stream-error]" if number % ERROR_EVERY == 0 else ""
                )
                try:
                    response = client.post(
                        "/v1/chat-messages",
                        json={
                            "inputs": {},
                            "query": query,
                            "user": user,
                            "response_mode": "streaming",
                        },
                    )
                    ok = response.status_code == 200
                except httpx.HTTPError as error:
                    ok, response = False, error
                took = time.perf_counter() - started
                with self._lock:
                    (self.sent if ok else self.failures).append(user)
                    self.phase.latencies.append(took)
                self._stop.wait(max(0.0, self.interval - took))


def rss_bytes(app: RunningApp) -> int:
    """Resident memory of every process of the app's process group."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != app.process.pid:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def refuse_connections(admin_dsn: str, database: str, refuse: bool) -> None:
    """ALTER DATABASE ... ALLOW_CONNECTIONS, and end the sessions already open."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"false" if refuse else "true"}'
        )
        if refuse:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )


def stored(dsn: str, run: str) -> tuple[int, int, int]:
    """(chat rows, distinct chats, error rows) of one run's users."""
    with psycopg.connect(dsn) as connection:
        chats, distinct = connection.execute(
            "select count(*), count(distinct user_id) from dify_logs where user_id like %s",
            (f"{run}-%",),
        ).fetchone()
        errors = connection.execute(
            'select count(*) from "error" where user_id like %s', (f"{run}-%",)
        ).fetchone()[0]
    return chats, distinct, errors


def new_run() -> str:
    return f"run{uuid.uuid4().hex[:8]}"


def sleep_while_sampling(seconds: float, sample: Callable[[], None], every: float = 1.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sample()
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
