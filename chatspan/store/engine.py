"""Engines for the store: URL validation, drivers, timeouts, and safe error descriptions.

Every database call chatspan makes from inside an app must be bounded in time, so the
engine carries a connect timeout and a statement timeout; and every error it logs must
be free of row content and passwords, so :func:`describe_error` is the only way a
database error reaches a log line.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url

from chatspan.config import ConfigError

# The drivers chatspan supports, per backend; the first is what a URL without one gets.
POSTGRES_DRIVERS = ("psycopg", "psycopg2")
SQLITE_DRIVERS = ("pysqlite",)
# Spellings operators use for PostgreSQL (Heroku-style URLs and libpq's own say postgres://).
_POSTGRES_NAMES = ("postgresql", "postgres")


def resolve_url(raw_url: str, variable: str = "CHATSPAN_DATABASE_URL") -> URL:
    """Parse a database URL and pick its driver, or fail with a message naming `variable`.

    ``postgresql://`` and ``postgres://`` mean psycopg 3, the driver chatspan installs and
    the one it COPies rows with, even where psycopg2 is installed too (Dify ships it, and
    SQLAlchemy would pick it for a URL that names no driver). Only an explicit
    ``postgresql+psycopg2://`` selects psycopg2, and with it the slower INSERT path.
    """
    try:
        url = make_url(raw_url)
    except (exc.ArgumentError, ValueError):
        raise ConfigError(
            f"{variable} is not a database URL (got {_redacted(raw_url)!r}); "
            "use postgresql://user:password@host:5432/db or sqlite:///path/to/chatspan.db"
        ) from None
    # Read from the URL's text: asking SQLAlchemy for the driver loads the dialect, which
    # fails for postgres:// and for drivers it does not know.
    backend, _, driver = url.drivername.partition("+")
    if backend in _POSTGRES_NAMES:
        driver = driver or POSTGRES_DRIVERS[0]
        if driver not in POSTGRES_DRIVERS:
            raise ConfigError(
                f"{variable} names the driver {driver!r}, which chatspan does not support; "
                "use postgresql:// (psycopg 3) or postgresql+psycopg2://"
            )
        if importlib.util.find_spec(driver) is None:
            raise ConfigError(
                f"{variable} asks for the {driver!r} driver, which is not installed; "
                f"pip install {'psycopg2-binary' if driver == 'psycopg2' else 'psycopg[binary]'}"
            )
        url = url.set(drivername=f"postgresql+{driver}")
    elif backend == "sqlite":
        if (driver or SQLITE_DRIVERS[0]) not in SQLITE_DRIVERS:
            raise ConfigError(f"{variable}: use sqlite:///path/to/file.db, not {url.drivername}")
    else:
        raise ConfigError(
            f"{variable} names the database {backend!r}; chatspan stores rows in "
            "PostgreSQL (postgresql://...) or SQLite (sqlite:///...)"
        )
    return url


def make_engine(
    raw_url: str,
    *,
    timeout_s: float,
    pool_size: int = 2,
    variable: str = "CHATSPAN_DATABASE_URL",
) -> Engine:
    """An engine whose every connect and statement is bounded by `timeout_s`."""
    url = resolve_url(raw_url, variable)
    if url.get_backend_name() == "postgresql":
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=timeout_s,
            connect_args={
                "connect_timeout": max(1, round(timeout_s)),
                "application_name": "chatspan",
                "options": f"-c statement_timeout={int(timeout_s * 1000)}",
            },
        )
    else:
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeout_s, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
    # A pool inherited through fork() would share sockets with the parent.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the query service read while an exporter writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def safe_url(url: str | URL) -> str:
    """The URL with its passwords hidden, for messages: the user's, and libpq's
    ``password`` and ``sslpassword`` query parameters."""
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        return "<not a database URL>"
    hidden = {key: "***" for key in parsed.query if "password" in key.lower()}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True)


def require_postgres(engine: Engine, feature: str) -> None:
    """Refuse a PostgreSQL-only operation on another database, naming the setting."""
    if engine.dialect.name != "postgresql":
        raise ConfigError(f"{feature} are for PostgreSQL (CHATSPAN_DATABASE_URL)")


def describe_error(error: BaseException) -> str:
    """One line about a database error, with no SQL parameters, row content or password.

    SQLAlchemy's own message embeds the statement and its parameters (chat text), so only
    the driver's error class, SQLSTATE and first message line are kept. For errors about
    data rather than the connection, the line is cut before the first quoted value.
    """
    original = getattr(error, "orig", None) or error
    name = type(original).__name__
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    lines = str(original).strip().splitlines()
    first_line = lines[0][:300] if lines else ""
    if not isinstance(error, (exc.OperationalError, exc.InterfaceError, OSError)):
        first_line = first_line.split('"')[0].split(":")[0].strip()
    detail = f" [{sqlstate}]" if sqlstate else ""
    return f"{name}{detail}: {first_line}" if first_line else f"{name}{detail}"


def _redacted(raw: str) -> str:
    """A malformed URL can still hold a password: keep only its scheme, if it has one."""
    scheme, sep, _rest = raw.partition("://")
    return f"{scheme[:20]}{sep}..." if sep else "a value without a scheme such as postgresql://"
