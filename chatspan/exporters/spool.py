"""A durable spool: batches an exporter could not deliver wait on disk until they can be.

The BatchSpanProcessor drops a batch whose export fails; an operator's chat history
would then have a hole wherever the database was restarted. So a failed batch is
written to a file (atomically: written aside, flushed, renamed into place) before
``export`` returns, and a background thread replays the files, oldest first, with
exponential backoff while the destination stays down.

Files outlive the process: the next process that starts an exporter on the same
directory replays what a crashed one left. Several processes may share a directory:
a file is replayed by whoever holds its lock (``flock``), and the lock dies with its
holder, so a file is never replayed by two at once nor lost with a dead process.
Replaying twice would be harmless anyway: row ids are deterministic.

The spool is capped (``CHATSPAN_SPOOL_MAX_BYTES``). When full, a new batch is dropped,
keeping the older ones (the start of an outage stays complete); each drop is logged
and counted.

A file that cannot be read or decoded (cut short, not JSON, wrong fields, or not a
regular file at all: a directory, a FIFO, a symlink) would otherwise hold the queue
forever, as files are replayed in order. It is moved to ``quarantine/`` in the spool's
directory, kept there for a person to look at, logged once and counted; the replay goes
on with the next file. Only regular files are opened, never through a symlink and never
in a way that blocks (a FIFO would hang the thread in ``open``). The directories are
private (0700): a batch written by another local user would become rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import stat
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from chatspan.concurrency import Wakeup, start_thread
from chatspan.config import ConfigError, SpoolSettings
from chatspan.records import SpanData, SpanEvent

_logger = logging.getLogger(__name__)

SUFFIX = ".batch.json"
QUARANTINE = "quarantine"
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0
# The batch file format: {"version": 2, "spans": [...]}. Version 1, written before the
# format carried a version, is the bare list of spans; its spans read the same way.
FORMAT_VERSION = 2
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def default_directory() -> Path:
    """``$XDG_STATE_HOME/chatspan/spool`` (``~/.local/state/chatspan/spool``)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "chatspan" / "spool"


def open_spool(
    settings: SpoolSettings,
    kind: str,
    destination: str,
    deliver: Callable[[list[SpanData]], None],
) -> Spool | None:
    """The spool of one exporter kind and destination, or None when spooling is off.

    Each destination has a directory of its own (named by a digest of it), so two apps
    on one host exporting to different databases never replay into each other's.
    """
    if not settings.enabled:
        return None
    root = Path(settings.directory) if settings.directory else default_directory()
    private_directory(root)
    digest = hashlib.sha256(destination.encode()).hexdigest()[:12]
    return Spool(root / f"{kind}-{digest}", deliver, max_bytes=settings.max_bytes, name=kind)


def private_directory(path: Path) -> None:
    """Make `path` (mode 0700) or check that it is this user's alone.

    Whoever can write into a spool can put rows into the database (a batch file is
    replayed as it stands) or wedge it; so a directory that another user owns or may
    write into is refused rather than used.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.stat(path)
    where = f"the spool directory {path} (CHATSPAN_SPOOL_DIR)"
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{where} is not a directory")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{where} belongs to user id {info.st_uid}, not to this process's user "
            f"({os.geteuid()}); point CHATSPAN_SPOOL_DIR at a directory of this user's own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{where} may be written by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run chmod 700 {path}, or point CHATSPAN_SPOOL_DIR at a private directory"
        )


_LIVE: weakref.WeakSet[Spool] = weakref.WeakSet()


def status(settings: SpoolSettings) -> dict:
    """What waits in the spool directories, and this process's counters (for /healthz)."""
    root = Path(settings.directory) if settings.directory else default_directory()
    queues = []
    if root.is_dir():
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            batches = _batches(directory)
            queues.append(
                {
                    "name": directory.name,
                    "pending_batches": len(batches),
                    "pending_bytes": sum(size for _path, size in batches),
                    "quarantined_batches": _count_entries(directory / QUARANTINE),
                }
            )
    counters = [{"name": spool.directory.name, **spool.counters.as_dict()} for spool in _LIVE]
    return {"directory": str(root), "queues": queues, "this_process": counters}


def _count_entries(directory: Path) -> int:
    try:
        with os.scandir(directory) as entries:
            return sum(1 for _entry in entries)
    except FileNotFoundError:
        return 0


@dataclass
class SpoolCounters:
    spooled: int = 0
    replayed: int = 0
    dropped: int = 0
    quarantined: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "spooled": self.spooled,
            "replayed": self.replayed,
            "dropped": self.dropped,
            "quarantined": self.quarantined,
        }


class Spool:
    """Batches of spans on disk, and the thread that delivers them.

    `deliver(spans)` must store the batch or raise; it runs on the spool's thread.
    """

    def __init__(
        self,
        directory: Path,
        deliver: Callable[[list[SpanData]], None],
        *,
        max_bytes: int,
        name: str,
    ) -> None:
        self.directory = directory
        self._deliver = deliver
        self._max_bytes = max_bytes
        self._name = name
        self.counters = SpoolCounters()
        # The replay thread is a real OS thread even under gevent: it sleeps on native
        # signals (chatspan.concurrency.Wakeup), never on gevent's events.
        self._wakeup = Wakeup()  # a new batch on disk, or stop
        self._stopped = Wakeup()  # the replay thread has ended
        self._stopping = False
        self._running_pid: int | None = None  # the process whose replay thread runs
        self._thread_lock = threading.Lock()
        self._failing = False  # the destination failed and the backlog is not delivered yet
        self._left_alone: set[str] = set()  # files of a newer format, reported once
        private_directory(directory)
        (directory / "incoming").mkdir(mode=0o700, exist_ok=True)
        _LIVE.add(self)

    # -- writing ------------------------------------------------------------------

    def put(self, spans: Sequence[SpanData]) -> bool:
        """Keep a batch on disk; False when the spool is full and the batch was dropped."""
        document = {"version": FORMAT_VERSION, "spans": [_encode(span) for span in spans]}
        body = json.dumps(document, separators=(",", ":")).encode()
        if self.size() + len(body) > self._max_bytes:
            self.counters.dropped += 1
            _logger.error(
                "chatspan: the %s spool in %s is full (%d bytes); dropped a batch of %d span(s) "
                "(dropped so far: %d)",
                self._name,
                self.directory,
                self._max_bytes,
                len(spans),
                self.counters.dropped,
            )
            return False
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}{SUFFIX}"
        descriptor, aside = tempfile.mkstemp(dir=self.directory / "incoming")
        with os.fdopen(descriptor, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(aside, self.directory / name)  # whole or not at all
        _fsync_directory(self.directory)
        self.counters.spooled += 1
        self._failing = True
        _logger.warning(
            "chatspan: kept a batch of %d span(s) in the %s spool to deliver later (%s)",
            len(spans),
            self._name,
            self._tally(),
        )
        self.start()
        self._wakeup.set()
        return True

    @property
    def backing_up(self) -> bool:
        """The destination is failing and batches wait: new ones should join the queue
        directly rather than hold the exporter's thread on a destination that is down."""
        return self._failing and self.pending() > 0

    def size(self) -> int:
        return sum(size for _path, size in _batches(self.directory))

    def pending(self) -> int:
        return len(_batches(self.directory))

    # -- replaying ----------------------------------------------------------------

    def start(self) -> None:
        """Start the replay thread of this process (after a fork, the child's own)."""
        with self._thread_lock:
            if self._running_pid == os.getpid():
                return
            self._running_pid = os.getpid()
            self._stopping = False
            # Fresh signals for this thread: a forked child's copies hold the parent's state.
            self._wakeup, self._stopped = Wakeup(), Wakeup()
        try:
            start_thread(self._run, f"chatspan-{self._name}-spool")
        except RuntimeError:
            # The interpreter is exiting (a last flush at shutdown; Python 3.12 refuses new
            # threads then): what waits is replayed by the next process.
            self._running_pid = None

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the replay thread to end after the file it is on, and wait up to `timeout`."""
        self._stopping = True
        if self._running_pid == os.getpid():
            self._wakeup.set()
            self._stopped.wait(timeout)

    def replay_once(self) -> bool:
        """Deliver every file this process can lock; True when none failed."""
        return self._replay_all(lambda: False)

    def _replay_all(self, stopping: Callable[[], bool]) -> bool:
        for path, _size in _batches(self.directory):
            if stopping():
                return True
            if self._replay(path) is False:
                self._failing = True
                return False
        self._failing = False
        return True

    def _run(self) -> None:
        delay, stopped = RETRY_MIN_S, self._stopped
        try:
            while not self._stopping:
                try:
                    delivered = self._replay_all(lambda: self._stopping)
                except Exception:  # the thread must not die silently: log and go on
                    _logger.exception("chatspan: the %s spool's replay failed", self._name)
                    delivered = False
                if delivered:
                    delay = RETRY_MIN_S
                    self._pause(60)  # until a new batch arrives, or a minute passes
                else:
                    self._pause(random.uniform(delay / 2, delay))  # noqa: S311
                    delay = min(RETRY_MAX_S, delay * 2)
        finally:
            if self._running_pid == os.getpid():
                self._running_pid = None
            stopped.set()

    def _pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, ending early when a batch arrives or on stop."""
        if not self._stopping:
            self._wakeup.wait(seconds)

    def _replay(self, path: Path) -> bool | None:
        """True: delivered, or quarantined; False: the destination failed; None: left
        alone (another process has it, or it is of a newer format)."""
        try:
            with _locked(path) as file:
                return None if file is None else self._replay_locked(path, file)
        except _NotARegularFile as failure:
            self._quarantine(path, failure)
            return True

    def _replay_locked(self, path: Path, file: BinaryIO) -> bool | None:
        try:
            spans = _read_batch(file)
        except _NewerFormat as newer:
            if path.name not in self._left_alone:
                self._left_alone.add(path.name)
                _logger.warning(
                    "chatspan: left %s in the %s spool for a newer chatspan to replay (%s)",
                    path.name,
                    self._name,
                    newer,
                )
            return None
        except (OSError, ValueError, TypeError, KeyError) as failure:
            self._quarantine(path, failure)  # still locked: nobody else is reading it
            return True
        try:
            self._deliver(spans)
        except Exception as failure:
            _logger.warning(
                "chatspan: the %s spool could not deliver yet (%s); %d batch(es) waiting",
                self._name,
                type(failure).__name__,
                self.pending(),
            )
            return False
        self.counters.replayed += 1
        path.unlink()
        _fsync_directory(self.directory)
        _logger.info(
            "chatspan: delivered a spooled batch of %d span(s) (%s spool: %s)",
            len(spans),
            self._name,
            self._tally(),
        )
        return True

    def _quarantine(self, path: Path, failure: Exception) -> None:
        """Move a file that cannot be replayed out of the queue, keeping it for a person."""
        quarantine = self.directory / QUARANTINE
        quarantine.mkdir(mode=0o700, exist_ok=True)
        target = quarantine / path.name
        if os.path.lexists(target):
            target = quarantine / f"{path.name}.{uuid.uuid4().hex}"
        try:
            os.rename(path, target)  # the entry itself: a symlink moves, not what it names
        except FileNotFoundError:
            return  # another process moved it first
        _fsync_directory(self.directory)
        self.counters.quarantined += 1
        _logger.error(
            "chatspan: the %s spool cannot replay %s (%s: %s); moved it to %s and went on (%s)",
            self._name,
            path.name,
            type(failure).__name__,
            str(failure)[:200],
            target,
            self._tally(),
        )

    def _tally(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in self.counters.as_dict().items())


class _NewerFormat(Exception):
    """A batch file written by a newer chatspan: not this process's to judge."""


class _NotARegularFile(OSError):
    """A spool entry that is no regular file (or cannot be opened as one)."""


def _read_batch(file: BinaryIO) -> list[SpanData]:
    """The spans of a batch file; raises ValueError, TypeError or KeyError when it is
    not one (cut short, not JSON, wrong fields), _NewerFormat when it is a newer one."""
    document = json.loads(file.read())
    if isinstance(document, list):
        version, items = 1, document  # written before the format carried a version
    elif isinstance(document, dict) and isinstance(document.get("version"), int):
        version, items = document["version"], document["spans"]
    else:
        raise ValueError("not a batch: neither a list of spans nor a versioned batch")
    if version > FORMAT_VERSION:
        raise _NewerFormat(f"format version {version}; this one reads up to {FORMAT_VERSION}")
    if version < 1 or not isinstance(items, list):
        raise ValueError(f"not a batch of format version {version}")
    return [_decode(item) for item in items]


def _batches(directory: Path) -> list[tuple[Path, int]]:
    """The batch files waiting in `directory`, oldest first, with their sizes.

    Other processes deliver and remove files meanwhile: one gone between the listing
    and its stat is simply not there, never an error (`put` runs inside ``export``).
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if entry.name.endswith(SUFFIX):
            try:  # the entry itself: a symlink is listed (and quarantined), not followed
                found.append((Path(entry.path), entry.stat(follow_symlinks=False).st_size))
            except FileNotFoundError:
                continue
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[BinaryIO | None]:
    """The file, opened and exclusively locked by this process; None if unavailable.

    Opened without following a symlink and without blocking (a FIFO would block until
    a writer came); anything but a regular file raises _NotARegularFile, which the
    caller quarantines like any other unreadable file.
    """
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        yield None  # delivered by another process meanwhile
        return
    except OSError as error:  # a symlink (ELOOP), a socket (ENXIO), no permission
        raise _NotARegularFile(error.errno, f"cannot open it: {error.strerror}") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise _NotARegularFile(f"not a regular file (mode {mode:o})")
    with os.fdopen(descriptor, "rb") as file:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None  # another process is replaying it
            return
        try:
            # Locked, but is it still the file? It may have been delivered and removed
            # between our open and our lock.
            try:
                current = os.stat(path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(descriptor).st_ino:
                yield None
                return
            yield file
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _encode(span: SpanData) -> dict:
    return {
        "t": f"{span.trace_id:032x}",
        "s": f"{span.span_id:016x}",
        "n": span.name,
        "b": span.start_ns,
        "e": span.end_ns,
        "x": span.is_error,
        "a": dict(span.attributes),
        "v": [[event.name, event.timestamp_ns, dict(event.attributes)] for event in span.events],
        "r": span.service_name,
    }


def _decode(item: dict) -> SpanData:
    """A span as `_encode` wrote it; TypeError when a field is not what it wrote."""
    return SpanData(
        int(_typed(item["t"], str), 16),
        int(_typed(item["s"], str), 16),
        _typed(item["n"], str),
        _typed(item["b"], int),
        None if item["e"] is None else _typed(item["e"], int),
        _typed(item["x"], bool),
        _typed(item["a"], dict),
        tuple(
            SpanEvent(_typed(name, str), _typed(timestamp, int), _typed(attributes, dict))
            for name, timestamp, attributes in _typed(item["v"], list)
        ),
        None if item["r"] is None else _typed(item["r"], str),
    )


Field = TypeVar("Field")


def _typed(value: object, kind: type[Field]) -> Field:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"a spooled span holds {type(value).__name__} where {kind.__name__} goes")
    return value
