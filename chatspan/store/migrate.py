"""Schema migrations: Alembic scripts shipped inside the package, applied programmatically.

chatspan keeps its own version table so it can share a database with an app that uses
Alembic too (Dify does).

Alembic is imported only to migrate. Checking that a database is up to date is one
query of the version table against :data:`HEAD_REVISION` (a test keeps the constant
equal to the scripts' head): loading Alembic and its script directory for that cost
every process's first export CPU under the GIL of a process serving chats (60 ms on
the benchmark machine, about a second in one Dify deployment), and ran Alembic's
imports and logging on the export thread.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import ColumnClause, Engine, column, exc, inspect, select, table

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "chatspan_alembic_version"
HEAD_REVISION = "0004"  # the newest script in migrations/versions
MIGRATION_LOCK_ID = 0x63686174  # an arbitrary constant: "chat"
SCRIPTS = Path(__file__).parent / "migrations"
_upgrade_lock = threading.Lock()
_version_num: ColumnClause[str] = column("version_num")
_versions = select(_version_num).select_from(table(VERSION_TABLE, _version_num))


def _config() -> Config:
    from alembic.config import Config  # noqa: PLC0415  (Alembic only when migrating)

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; a no-op when it is already there.

    Safe to call from several threads (Alembic's runtime is process-global, so they take
    turns) and from several processes: on PostgreSQL they queue on an advisory lock; on
    SQLite the loser of a race finds the schema done and carries on.
    """
    from alembic import command  # noqa: PLC0415

    config = _config()
    with _upgrade_lock:
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except Exception:
            if revision != "head" or current_revision(engine) != HEAD_REVISION:
                raise


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when chatspan's tables were never created.

    One query when the version table exists. A database that cannot be reached raises
    (once: the connection is not tried again).
    """
    with engine.connect() as connection:
        try:
            return connection.execute(_versions).scalar()
        except exc.DBAPIError:
            connection.rollback()
            if inspect(connection).has_table(VERSION_TABLE):
                raise  # the table is there: the query failed for another reason
            return None


class SchemaGate:
    """Brings the schema up to date once per process, on first use, if allowed to.

    Exporters and the ingest endpoint write into tables that may not exist yet on a new
    database; with CHATSPAN_AUTO_MIGRATE on (the default), the first write creates them.
    On a database that is already up to date this costs one query, and Alembic is not
    loaded at all.
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
                if current_revision(self._engine) != HEAD_REVISION:
                    upgrade(self._engine)
                self._ready = True
