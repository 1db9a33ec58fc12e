"""Shared fixtures: a scratch PostgreSQL database per test session, SQLite per test.

PostgreSQL tests read CHATSPAN_TEST_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/test) and work in a database of their own,
created here and dropped at the end. They skip, saying why, when no server answers,
unless CHATSPAN_REQUIRE_POSTGRES=1 (as CI sets), which turns that into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade

from pgdb import base_url, postgres_unreachable_reason, scratch_database
from statements import StatementLog, statement_log


@pytest.fixture(autouse=True)
def spool_directory(tmp_path, monkeypatch) -> str:
    """Each test's exporters (and the apps it starts) spool into a directory of its own."""
    directory = str(tmp_path / "spool")
    monkeypatch.setenv("CHATSPAN_SPOOL_DIR", directory)
    return directory


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The base URL of a reachable PostgreSQL server."""
    url = base_url()
    reason = postgres_unreachable_reason(url)
    if reason:
        if os.environ.get("CHATSPAN_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (CHATSPAN_REQUIRE_POSTGRES=1 forbids skipping)")
        pytest.skip(f"{reason}; set CHATSPAN_TEST_DATABASE_URL to run the PostgreSQL tests")
    return url


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A migrated scratch database shared by this test session (psycopg 3 URL)."""
    with scratch_database(postgres_server, "test") as url:
        engine = make_engine(url, timeout_s=30)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture
def empty_postgres_database(postgres_server: str) -> Iterator[str]:
    """A new database with no tables, for migration tests."""
    with scratch_database(postgres_server, "empty") as url:
        yield url


def _fresh_sqlite(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'chatspan.db'}"
    engine = make_engine(url, timeout_s=30)
    upgrade(engine)
    engine.dispose()
    return url


def _emptied_postgres(request: pytest.FixtureRequest, driver: str = "psycopg") -> str:
    url = request.getfixturevalue("postgres_database")
    engine = make_engine(url, timeout_s=30)
    with engine.begin() as connection:
        connection.execute(text('TRUNCATE dify_logs, "error", chatspan_alert_state'))
    engine.dispose()
    return (
        make_url(url).set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A migrated, empty store: a new SQLite file, or the session's PostgreSQL database
    with its tables emptied."""
    return _fresh_sqlite(tmp_path) if request.param == "sqlite" else _emptied_postgres(request)


@pytest.fixture(params=["sqlite", "postgresql+psycopg", "postgresql+psycopg2"])
def any_driver_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Like database_url, with PostgreSQL reached through each supported driver."""
    if request.param == "sqlite":
        return _fresh_sqlite(tmp_path)
    return _emptied_postgres(request, driver=request.param.split("+")[1])


@pytest.fixture
def inserting_statements(request: pytest.FixtureRequest) -> Iterator[StatementLog]:
    """The session's PostgreSQL store, emptied, recording which statements insert rows."""
    with statement_log(_emptied_postgres(request)) as log:
        yield log
