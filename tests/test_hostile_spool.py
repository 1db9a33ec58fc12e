"""Hostile spool directories: a file that cannot be replayed is quarantined and the queue
goes on; only regular files are opened, never through a symlink, never blocking; the
format carries a version and old batches still replay; the directory is private."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chatspan.config import ApiSettings, ConfigError, SpoolSettings
from chatspan.exporters.spool import (
    FORMAT_VERSION,
    QUARANTINE,
    SUFFIX,
    Spool,
    open_spool,
    status,
)
from chatspan.query_api import create_app
from chatspan.query_api.state import state_of
from chatspan.records import SpanData

from servers import wait_for
from spans import chat_spans

NOBODY = 65534


class QuietSpool(Spool):
    """A spool whose files stay where they are: no replay thread of its own."""

    def start(self) -> None:
        pass


def _batch(n: int = 3) -> list[SpanData]:
    return [SpanData.from_sdk(span) for span in chat_spans(n, exception_every=2)]


def _well_formed_file(directory: Path) -> bytes:
    """The bytes of a batch file as the spool writes it (the file is then removed)."""
    QuietSpool(directory, lambda spans: None, max_bytes=10**8, name="maker").put(_batch(2))
    (path,) = directory.glob(f"*{SUFFIX}")
    content = path.read_bytes()
    path.unlink()
    return content


def _cut_short(path: Path, good: bytes) -> None:
    path.write_bytes(good[: len(good) // 2])


def _not_utf8(path: Path, good: bytes) -> None:
    path.write_bytes(b'{"version": 2, "spans": ["\xff\xfe"]}')


def _not_json(path: Path, good: bytes) -> None:
    path.write_bytes(b"{not json")


def _wrong_fields(path: Path, good: bytes) -> None:
    document = json.loads(good)
    document["spans"][0]["b"] = "yesterday"
    path.write_text(json.dumps(document))


def _old_format_wrong_fields(path: Path, good: bytes) -> None:
    path.write_text(json.dumps([{"t": "zz"}]))


def _not_a_batch(path: Path, good: bytes) -> None:
    path.write_text(json.dumps({"spans": []}))


def _a_directory(path: Path, good: bytes) -> None:
    path.mkdir()
    (path / "inside").write_bytes(good)


def _a_fifo(path: Path, good: bytes) -> None:
    os.mkfifo(path)  # opening it to read, blocking, waits for a writer that never comes


def _a_symlink(path: Path, good: bytes) -> None:
    outside = path.parent.parent / "outside.json"
    outside.write_bytes(good)  # a well-formed batch: following the link would replay it
    path.symlink_to(outside)


def _a_dangling_symlink(path: Path, good: bytes) -> None:
    path.symlink_to(path.parent / "nowhere")


def _unreadable(path: Path, good: bytes) -> None:
    path.write_bytes(good)
    path.chmod(0)


BAD_FILES: dict[str, Callable[[Path, bytes], None]] = {
    "cut short": _cut_short,
    "not UTF-8": _not_utf8,
    "not JSON": _not_json,
    "wrong fields": _wrong_fields,
    "old format, wrong fields": _old_format_wrong_fields,
    "no version, not a list": _not_a_batch,
    "a directory": _a_directory,
    "a FIFO": _a_fifo,
    "a symlink": _a_symlink,
    "a dangling symlink": _a_dangling_symlink,
    "unreadable": _unreadable,
}


def _bad_file_scenario(root: str, kind: str) -> dict:
    """A bad file first in the queue, a good batch behind it: what the replay makes of it."""
    directory = Path(root) / "postgres-test"
    good = _well_formed_file(directory)
    bad = directory / f"{0:020d}-bad{SUFFIX}"  # the oldest name: replayed first
    BAD_FILES[kind](bad, good)
    delivered: list[list[SpanData]] = []
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("chatspan")
    logger.addHandler(handler)
    try:
        spool = Spool(directory, delivered.append, max_bytes=10**8, name="test")
        batch = _batch(3)
        spool.put(batch)  # starts the replay thread, which meets the bad file first
        wait_for(lambda: delivered, timeout=15, what="the batch behind the bad file")
        spool.stop()
        again = Spool(directory, delivered.append, max_bytes=10**8, name="test")
        again.replay_once()  # a restarted process: nothing more to do, nothing to say
    finally:
        logger.removeHandler(handler)
    quarantine = directory / QUARANTINE
    return {
        "delivered": [[span.trace_id for span in spans] for spans in delivered],
        "expected": [[span.trace_id for span in batch]],
        "left_in_queue": os.path.lexists(bad),
        "quarantined": sorted(entry.name for entry in quarantine.iterdir()),
        "a symlink kept as one": os.path.islink(quarantine / bad.name),
        "logged": [r.getMessage() for r in records if bad.name in r.getMessage()],
        "counted": spool.counters.quarantined,
        "status": status(SpoolSettings(directory=root))["queues"],
        "backing_up": spool.backing_up or again.backing_up,
    }


def _as_nobody(root: str, kind: str, results: multiprocessing.Queue) -> None:
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    results.put(_bad_file_scenario(root, kind))


def _run_bad_file_scenario(tmp_path: Path, kind: str) -> dict:
    if kind != "unreadable" or os.geteuid() != 0:
        return _bad_file_scenario(str(tmp_path / "spool"), kind)
    # Root reads any file: the scenario runs in a child that has become another user.
    root = tempfile.mkdtemp(prefix="chatspan-spool-")
    try:
        os.chown(root, NOBODY, NOBODY)
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_as_nobody, args=(root, kind, results))
        child.start()
        try:
            outcome = results.get(timeout=30)
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
        return outcome
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_file_that_cannot_be_replayed_is_quarantined_and_the_queue_goes_on(tmp_path, kind):
    outcome = _run_bad_file_scenario(tmp_path, kind)
    assert outcome["delivered"] == outcome["expected"]  # the good batch, and nothing else
    assert outcome["left_in_queue"] is False
    assert outcome["quarantined"] == [f"{0:020d}-bad{SUFFIX}"]  # kept, under its own name
    if kind == "a symlink":
        assert outcome["a symlink kept as one"] is True  # the link moved, not its target
    assert len(outcome["logged"]) == 1, outcome["logged"]  # once, across two processes
    assert "quarantine" in outcome["logged"][0]
    assert outcome["counted"] == 1
    (queue,) = outcome["status"]
    assert (queue["quarantined_batches"], queue["pending_batches"]) == (1, 0)
    assert outcome["backing_up"] is False


def test_the_quarantine_shows_in_healthz(tmp_path, spool_directory):
    directory = Path(spool_directory) / "postgres-test"
    good = _well_formed_file(directory)
    _cut_short(directory / f"1{SUFFIX}", good)
    QuietSpool(directory, lambda spans: None, max_bytes=10**8, name="test").replay_once()
    admin = "placeholder-admin-key-0123456789"
    settings = ApiSettings(
        database_url=f"sqlite:///{tmp_path / 'health.db'}", admin_api_keys=(admin,)
    )
    app = create_app(settings)
    with TestClient(app) as client:  # the spool's details are for admins
        health = client.get("/healthz", headers={"Authorization": f"Bearer {admin}"}).json()
    state_of(app).engine.dispose()
    (queue,) = health["spool"]["queues"]
    assert queue["quarantined_batches"] == 1


def test_a_batch_file_says_its_format_version(tmp_path):
    spool = QuietSpool(tmp_path, lambda spans: None, max_bytes=10**8, name="test")
    spool.put(_batch(1))
    (path,) = tmp_path.glob(f"*{SUFFIX}")
    assert json.loads(path.read_bytes())["version"] == FORMAT_VERSION == 2


def test_a_batch_spooled_before_the_format_had_a_version_is_still_delivered(tmp_path):
    batch = _batch(4)
    version_2 = json.loads(_well_formed_file(tmp_path))
    # What earlier chatspan wrote: the bare list of spans.
    spool = QuietSpool(tmp_path, lambda spans: None, max_bytes=10**8, name="test")
    spool.put(batch)
    (path,) = tmp_path.glob(f"*{SUFFIX}")
    path.write_text(json.dumps(json.loads(path.read_bytes())["spans"]))
    assert isinstance(json.loads(path.read_bytes()), list) and "spans" in version_2
    delivered = []
    spool = QuietSpool(tmp_path, delivered.append, max_bytes=10**8, name="test")
    assert spool.replay_once() is True
    assert delivered == [batch]
    assert spool.counters.quarantined == 0


def test_a_batch_of_a_newer_format_is_left_for_a_newer_process(tmp_path, caplog):
    newer = tmp_path / f"{0:020d}-newer{SUFFIX}"
    good = json.loads(_well_formed_file(tmp_path))
    newer.write_text(json.dumps({**good, "version": FORMAT_VERSION + 1}))
    delivered = []
    spool = QuietSpool(tmp_path, delivered.append, max_bytes=10**8, name="test")
    spool.put(_batch(2))
    with caplog.at_level(logging.WARNING, logger="chatspan"):
        assert spool.replay_once() is True
        assert spool.replay_once() is True
    assert len(delivered) == 1  # the batch behind it went on
    assert newer.exists()  # neither replayed nor quarantined: a newer process can
    assert caplog.text.count(newer.name) == 1
    assert spool.backing_up is False


def test_the_spool_directory_is_made_private(tmp_path):
    root = tmp_path / "new" / "spool"
    spool = open_spool(SpoolSettings(directory=str(root)), "postgres", "db", lambda spans: None)
    assert spool is not None
    for directory in (root, spool.directory, spool.directory / "incoming"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702], ids=oct)
def test_a_spool_directory_others_may_write_is_refused(tmp_path, mode):
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(mode)
    with pytest.raises(ConfigError, match="CHATSPAN_SPOOL_DIR") as refused:
        open_spool(SpoolSettings(directory=str(root)), "postgres", "db", lambda spans: None)
    assert "chmod 700" in str(refused.value)
    assert list(root.iterdir()) == []  # nothing was written into it


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
@pytest.mark.parametrize("whose", ["root", "queue"])
def test_a_spool_directory_of_another_user_is_refused(tmp_path, whose):
    root = tmp_path / "spool"
    spool = open_spool(SpoolSettings(directory=str(root)), "postgres", "db", lambda spans: None)
    assert spool is not None
    os.chown(root if whose == "root" else spool.directory, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match="CHATSPAN_SPOOL_DIR") as refused:
        open_spool(SpoolSettings(directory=str(root)), "postgres", "db", lambda spans: None)
    assert f"user id {NOBODY}" in str(refused.value)
