"""Schema migrations: Alembic scripts shipped inside the package, applied programmatically.

chatspan keeps its own version table so it can share a database with an app that uses
Alembic too (Dify does).
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

VERSION_TABLE = "chatspan_alembic_version"
MIGRATION_LOCK_ID = 0x63686174  # an arbitrary constant: "chat"
_SCRIPTS = Path(__file__).parent / "migrations"
_upgrade_lock = threading.Lock()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; a no-op when it is already there.

    Safe to call from several threads (Alembic's runtime is process-global, so they take
    turns) and from several processes: on PostgreSQL they queue on an advisory lock; on
    SQLite the loser of a race finds the schema done and carries on.
    """
    config = _config()
    with _upgrade_lock:
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except Exception:
            if revision != "head" or current_revision(engine) != head_revision():
                raise


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


class SchemaGate:
    """Brings the schema up to date once per process, on first use, if allowed to.

    Exporters and the ingest endpoint write into tables that may not exist yet on a new
    database; with CHATSPAN_AUTO_MIGRATE on (the default), the first write creates them.
    """

    def __init__(self, engine: Engine, *, enabled: bool) -> None:
        self._engine = engine
        self._ready = not enabled
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                upgrade(self._engine)
                self._ready = True
