"""Example apps run as real servers in subprocesses, under the real launcher or bare."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent

# How each server runs each example app, on a port given as {port}.
COMMANDS = {
    "flask": ["flask", "--app", "chatspan.examples.dify_flask", "run", "--port", "{port}"],
    "gunicorn": [
        "gunicorn",
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "4",
        "chatspan.examples.dify_flask:app",
    ],
    "uvicorn": ["uvicorn", "chatspan.examples.dify_fastapi:app", "--port", "{port}"],
    # Dify's process model: gunicorn with gevent (or sync) workers, and uvicorn workers.
    "gunicorn-gevent": [
        "gunicorn",
        "--bind",
        "127.0.0.1:{port}",
        "--worker-class",
        "gevent",
        "--workers",
        "2",
        "--graceful-timeout",
        "20",
        "chatspan.examples.dify_gevent:app",
    ],
    # The same, with logging set up as Dify's api sets it up (tests/dify_logging_app.py,
    # which needs the tests directory on PYTHONPATH).
    "gunicorn-gevent-dify-logging": [
        "gunicorn",
        "--bind",
        "127.0.0.1:{port}",
        "--worker-class",
        "gevent",
        "--workers",
        "2",
        "--graceful-timeout",
        "20",
        "dify_logging_app:app",
    ],
    "gunicorn-sync": [
        "gunicorn",
        "--bind",
        "127.0.0.1:{port}",
        "--worker-class",
        "sync",
        "--workers",
        "2",
        "--graceful-timeout",
        "20",
        "chatspan.examples.dify_gevent:app",
    ],
    "gunicorn-uvicorn": [
        "gunicorn",
        "--bind",
        "127.0.0.1:{port}",
        "--worker-class",
        "uvicorn_worker.UvicornWorker",
        "--workers",
        "2",
        "chatspan.examples.dify_fastapi:app",
    ],
}
APP_KEY = "app-exampleKey0123456789abcdef"  # a placeholder key the example app accepts


@dataclass
class RunningApp:
    base_url: str
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Kept from the test process's environment: the test's own spool directory, and which
# distro and configurator the launcher loads when the run names them (an environment
# with opentelemetry-distro installed beside chatspan, as Dify 1.x's is).
_KEPT = ("CHATSPAN_SPOOL_DIR", "OTEL_PYTHON_DISTRO", "OTEL_PYTHON_CONFIGURATOR")


def clean_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without any chatspan or OpenTelemetry setting
    (but those in _KEPT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATSPAN_", "OTEL_"))}
    env.update({k: os.environ[k] for k in _KEPT if k in os.environ})
    env.update(overrides)
    return env


@contextlib.contextmanager
def run_app(
    server: str, log_dir: Path, env: dict[str, str], *, instrumented: bool = True
) -> Iterator[RunningApp]:
    """Start an example app (under opentelemetry-instrument unless told otherwise)."""
    port = free_port()
    command = [str(BIN / COMMANDS[server][0]), *(a.format(port=port) for a in COMMANDS[server][1:])]
    if instrumented:
        command = [str(BIN / "opentelemetry-instrument"), *command]
    log_path = log_dir / f"{server}-{port}.log"
    with run_process(command, env, log_path, port, answers("/v1/parameters"), what=server) as app:
        yield app


@contextlib.contextmanager
def run_process(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    port: int,
    ready: Callable[[str], bool],
    *,
    what: str,
    timeout: float = 30,
) -> Iterator[RunningApp]:
    """Run a server in its own session, its output in `log_path`; yield it once
    `ready(base_url)`, stop it (the whole session) at the end."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    app = RunningApp(f"http://127.0.0.1:{port}", log_path, process)
    try:
        deadline = time.monotonic() + timeout
        while not _is_ready(app, ready, what):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {timeout} s:\n{app.log()}")
            time.sleep(0.1)
        yield app
    finally:
        stop(app)


def answers(path: str) -> Callable[[str], bool]:
    """Ready when GET `path` answers 200."""
    return lambda base_url: httpx.get(f"{base_url}{path}", timeout=2).status_code == 200


def _is_ready(app: RunningApp, ready: Callable[[str], bool], what: str) -> bool:
    if app.process.poll() is not None:
        raise RuntimeError(f"{what} exited with {app.process.returncode}:\n{app.log()}")
    try:
        return ready(app.base_url)
    except httpx.HTTPError:
        return False


def stop(app: RunningApp, sig: int = signal.SIGTERM) -> None:
    if app.process.poll() is None:
        os.killpg(app.process.pid, sig)
        try:
            app.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(app.process.pid, signal.SIGKILL)
            app.process.wait()


def worker_pids(master: int) -> list[int]:
    """The processes whose parent is `master` (a gunicorn master's workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == master:
                pids.append(int(entry))
    return pids


def wait_for(
    condition: Callable[[], object], timeout: float = 20, what: str = "condition"
) -> object:
    """Poll until `condition()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def run_chatspan_serve(
    log_dir: Path, env: dict[str, str], port: int | None = None, args: Sequence[str] = ()
) -> Iterator[RunningApp]:
    """`chatspan serve [args]` in a subprocess, on `port` (or a free one)."""
    port = port or free_port()
    log_path = log_dir / f"serve-{port}-{time.monotonic_ns()}.log"
    command = [str(BIN / "chatspan"), "serve", "--port", str(port), *args]
    with run_process(
        command, env, log_path, port, answers("/healthz"), what="chatspan serve"
    ) as app:
        yield app
