"""Migrations: `chatspan db upgrade` on empty PostgreSQL and SQLite databases, twice, and
the migrated schema equals the tables the code writes to."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from chatspan.store.engine import make_engine
from chatspan.store.migrate import HEAD_REVISION, SCRIPTS, VERSION_TABLE, current_revision
from chatspan.store.tables import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'new' / 'chatspan.db'}"
    return request.getfixturevalue("empty_postgres_database")


def _db_upgrade(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatspan.cli", "db", "upgrade"],
        env={**os.environ, "CHATSPAN_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_upgrade_on_an_empty_database_then_again(empty_database_url):
    first = _db_upgrade(empty_database_url)
    assert first.returncode == 0, first.stderr
    assert f"schema revision {HEAD_REVISION}" in first.stdout
    engine = make_engine(empty_database_url, timeout_s=10)
    tables = set(inspect(engine).get_table_names())
    assert {"dify_logs", "error", VERSION_TABLE} <= tables
    indexes_before = {i["name"] for i in inspect(engine).get_indexes("error")}

    second = _db_upgrade(empty_database_url)
    assert second.returncode == 0, second.stderr
    assert f"schema revision {HEAD_REVISION}" in second.stdout
    assert {i["name"] for i in inspect(engine).get_indexes("error")} == indexes_before
    engine.dispose()


def test_the_head_revision_chatspan_checks_against_is_the_scripts_head():
    assert ScriptDirectory(str(SCRIPTS)).get_current_head() == HEAD_REVISION


def test_the_revision_of_a_database_without_chatspans_tables_is_none(empty_database_url):
    engine = make_engine(empty_database_url, timeout_s=10)
    assert current_revision(engine) is None
    engine.dispose()


def test_migrated_schema_matches_the_tables_in_code(empty_database_url):
    assert _db_upgrade(empty_database_url).returncode == 0
    engine = make_engine(empty_database_url, timeout_s=10)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [
            d
            for d in compare_metadata(context, metadata)
            if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)
        ]
    engine.dispose()
    assert differences == []


def test_admin_query_indexes_exist(empty_database_url):
    assert _db_upgrade(empty_database_url).returncode == 0
    engine = make_engine(empty_database_url, timeout_s=10)
    inspector = inspect(engine)
    chat_indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("dify_logs")}
    error_indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("error")}
    engine.dispose()
    assert ("user_id", "created_at", "id") in chat_indexes
    assert ("app_id", "created_at") in chat_indexes
    assert ("conversation_id", "created_at") in chat_indexes
    assert ("created_at", "id") in chat_indexes
    assert ("type_error", "created_at") in error_indexes
    assert ("fingerprint", "created_at") in error_indexes


def test_db_upgrade_with_a_bad_url_names_the_variable(tmp_path):
    result = _db_upgrade("postgresql+nosuchdriver://u@h/db")
    assert result.returncode == 2
    assert "CHATSPAN_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
