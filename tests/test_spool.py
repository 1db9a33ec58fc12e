"""The durable spool: atomic files, replay with backoff, one replayer per file across
processes, recovery after a crash, and a cap with a clear policy."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from opentelemetry.sdk.trace.export import SpanExportResult
from outage import refuse_connections

from chatspan.config import SpoolSettings, StoreSettings
from chatspan.exporters.postgres import PostgresSpanExporter
from chatspan.exporters.spool import RETRY_MIN_S, SUFFIX, Spool
from chatspan.records import SpanData

from pgdb import libpq_dsn
from rows import count_rows
from servers import wait_for
from spans import chat_spans
from wakeups import needs_proc, thread_named, wakeups


class QuietSpool(Spool):
    """A spool whose files stay where they are: no replay thread of its own."""

    def start(self) -> None:
        pass


def _batch(n: int, exception_every: int = 0) -> list[SpanData]:
    return [SpanData.from_sdk(span) for span in chat_spans(n, exception_every=exception_every)]


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def test_a_batch_round_trips_through_the_disk(tmp_path):
    delivered = []
    spool = QuietSpool(tmp_path, delivered.append, max_bytes=10**8, name="test")
    batch = _batch(5, exception_every=2)
    assert spool.put(batch) is True
    (path,) = _files(tmp_path)
    assert json.loads(path.read_text())  # whole, readable JSON
    assert list((tmp_path / "incoming").iterdir()) == []  # nothing left half-written
    assert spool.replay_once() is True
    assert delivered == [batch]
    assert _files(tmp_path) == []
    assert spool.counters.as_dict() == {
        "spooled": 1,
        "replayed": 1,
        "dropped": 0,
        "quarantined": 0,
    }


def test_the_replay_thread_delivers_on_its_own(tmp_path):
    delivered = []
    spool = Spool(tmp_path, delivered.append, max_bytes=10**8, name="test")
    spool.put(_batch(2))
    wait_for(lambda: not _files(tmp_path), what="the replay")
    assert len(delivered) == 1
    spool.stop()


@needs_proc
def test_the_replay_thread_sleeps_when_there_is_nothing_to_replay(tmp_path):
    delivered = []
    spool = Spool(tmp_path, delivered.append, max_bytes=10**8, name="idle")
    spool.put(_batch(1))
    wait_for(lambda: delivered, what="the replay")
    thread = thread_named("chatspan-idle-spool")
    before = wakeups(thread)
    time.sleep(1)  # the time being measured: nothing to do
    idle = wakeups(thread) - before
    spool.put(_batch(1))  # a new batch still wakes it at once
    wait_for(lambda: len(delivered) == 2, timeout=5, what="the second replay")
    spool.stop()
    assert idle == 0


def test_a_failing_destination_keeps_the_batch_and_is_retried(tmp_path, caplog):
    attempts = []

    def deliver(spans):
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionRefusedError("not yet")

    spool = Spool(tmp_path, deliver, max_bytes=10**8, name="test")
    with caplog.at_level(logging.WARNING, logger="chatspan"):
        spool.put(_batch(2))
        wait_for(lambda: len(attempts) >= 3 and not _files(tmp_path), timeout=20, what="3 tries")
    spool.stop()
    # Backed off between tries, the wait doubling: by the third try at least RETRY_MIN_S
    # (the first wait, up to RETRY_MIN_S, may be cut short by the batch's arrival).
    assert attempts[2] - attempts[1] >= 0.9 * RETRY_MIN_S
    assert "could not deliver yet (ConnectionRefusedError)" in caplog.text


def _unreachable(spans: list[SpanData]) -> None:
    raise OSError("down")


def test_a_full_spool_drops_the_new_batch_keeps_the_old_and_says_so(tmp_path, caplog):
    spool = QuietSpool(tmp_path, _unreachable, max_bytes=60_000, name="test")
    kept = 0
    with caplog.at_level(logging.ERROR, logger="chatspan"):
        for _ in range(20):
            kept += spool.put(_batch(10))
    assert 0 < kept < 20
    assert spool.counters.dropped == 20 - kept
    assert spool.size() <= 60_000
    assert "is full" in caplog.text


def _replay_in_child(directory: str, log: str) -> None:
    def deliver(spans: list[SpanData]) -> None:
        with open(log, "a") as out:
            out.write(f"{os.getpid()} {spans[0].trace_id:032x}\n")
        time.sleep(0.01)

    Spool(Path(directory), deliver, max_bytes=10**9, name="test").replay_once()


def test_several_processes_share_a_directory_and_replay_each_file_once(tmp_path):
    writer = QuietSpool(tmp_path, lambda spans: None, max_bytes=10**9, name="test")
    for _ in range(40):
        writer.put(_batch(1))
    log = tmp_path / "delivered.log"
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_replay_in_child, args=(str(tmp_path), str(log))) for _ in range(4)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    lines = log.read_text().splitlines()
    traces = [line.split()[1] for line in lines]
    assert len(traces) == 40
    assert len(set(traces)) == 40, "a file was replayed twice"
    assert _files(tmp_path) == []
    assert len({line.split()[0] for line in lines}) > 1, "only one process did the work"


CRASHING_WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from chatspan.exporters.spool import Spool
from chatspan.records import SpanData
from spans import chat_spans
def say(word):  # one write per line: print's two writes interleave across threads
    sys.stdout.write(word + "\\n")
    sys.stdout.flush()
def deliver(spans):
    say("replaying")
    time.sleep(3600)  # holding the file's lock, until killed
spool = Spool(__import__("pathlib").Path({directory!r}), deliver, max_bytes=10**9, name="test")
spool.put([SpanData.from_sdk(s) for s in chat_spans(3)])
say("spooled")
time.sleep(3600)
"""


def test_a_batch_survives_a_kill_9_and_is_replayed_by_the_next_process(tmp_path):
    script = CRASHING_WRITER.format(tests=str(Path(__file__).parent), directory=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        # Its replay thread holds the file's lock once it says it is replaying.
        said = {process.stdout.readline().strip(), process.stdout.readline().strip()}
        assert said == {"spooled", "replaying"}
        assert _replay_count(tmp_path) == 0, "a locked file must be left to its holder"
    finally:
        os.kill(process.pid, signal.SIGKILL)  # also when an assertion failed: no stray child
        process.wait()
    assert len(_files(tmp_path)) == 1
    delivered = []
    Spool(tmp_path, delivered.append, max_bytes=10**9, name="test").replay_once()
    assert len(delivered) == 1 and len(delivered[0]) == 3
    assert _files(tmp_path) == []


def _replay_count(directory: Path) -> int:
    delivered = []
    Spool(directory, delivered.append, max_bytes=10**9, name="probe").replay_once()
    return len(delivered)


def test_the_exporter_spools_while_the_database_refuses_and_delivers_after(
    postgres_database, spool_directory
):
    dsn = libpq_dsn(postgres_database)
    name = dsn.rsplit("/", 1)[-1]
    admin = libpq_dsn(postgres_database.rsplit("/", 1)[0] + "/postgres")
    exporter = PostgresSpanExporter(
        StoreSettings(database_url=postgres_database, export_timeout_s=3),
        SpoolSettings(directory=spool_directory),
    )
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute('TRUNCATE dify_logs, "error"')
    spans = chat_spans(30, exception_every=3)
    refuse_connections(admin, name, True)
    try:
        started = time.monotonic()
        results = [exporter.export(spans[i : i + 10]) for i in range(0, 30, 10)]
        assert results == [SpanExportResult.SUCCESS] * 3  # kept on disk, so not lost
        assert time.monotonic() - started < 10
        assert exporter.spool.pending() >= 1
    finally:
        refuse_connections(admin, name, False)
    wait_for(
        lambda: count_rows(postgres_database, "dify_logs") == 30, timeout=60, what="the replay"
    )
    assert count_rows(postgres_database, "error") == 10
    wait_for(lambda: exporter.spool.pending() == 0, what="the spool to empty")
    exporter.shutdown()
