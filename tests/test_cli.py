"""The chatspan command's refusals: no serving without admin keys, no open API on a
public address, and settings errors that name their variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from servers import clean_env

CHATSPAN = str(Path(sys.executable).parent / "chatspan")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHATSPAN, *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_to_start_without_admin_keys(tmp_path):
    result = _run("serve", CHATSPAN_DATABASE_URL=f"sqlite:///{tmp_path}/c.db")
    assert result.returncode == 2
    assert "CHATSPAN_ADMIN_API_KEYS" in result.stderr
    assert "--insecure" in result.stderr


def test_insecure_serving_is_for_loopback_only(tmp_path):
    result = _run(
        "serve",
        "--insecure",
        "--host",
        "0.0.0.0",
        CHATSPAN_DATABASE_URL=f"sqlite:///{tmp_path}/c.db",
    )
    assert result.returncode == 2
    assert "127.0.0.1" in result.stderr


def test_short_admin_keys_are_refused_without_echoing_them(tmp_path):
    result = _run(
        "serve",
        CHATSPAN_ADMIN_API_KEYS="tiny-key",
        CHATSPAN_DATABASE_URL=f"sqlite:///{tmp_path}/c.db",
    )
    assert result.returncode == 2
    assert "CHATSPAN_ADMIN_API_KEYS" in result.stderr
    assert "tiny-key" not in result.stderr


def test_a_trace_url_template_needs_the_trace_id(tmp_path):
    result = _run(
        "serve",
        CHATSPAN_ADMIN_API_KEYS="a-long-enough-admin-key-123",
        CHATSPAN_TRACE_URL_TEMPLATE="http://jaeger/trace/",
        CHATSPAN_DATABASE_URL=f"sqlite:///{tmp_path}/c.db",
    )
    assert result.returncode == 2
    assert "CHATSPAN_TRACE_URL_TEMPLATE must contain {trace_id}" in result.stderr


def test_search_indexes_are_created_and_dropped_on_postgresql(empty_postgres_database):
    url = empty_postgres_database
    assert _run("db", "upgrade", CHATSPAN_DATABASE_URL=url).returncode == 0
    created = _run("db", "search-index", "create", CHATSPAN_DATABASE_URL=url)
    assert created.returncode == 0, created.stderr
    assert _index_names(url) >= {"ix_dify_logs_input_trgm", "ix_dify_logs_output_trgm"}
    assert _run("db", "search-index", "create", CHATSPAN_DATABASE_URL=url).returncode == 0  # again
    assert _run("db", "search-index", "drop", CHATSPAN_DATABASE_URL=url).returncode == 0
    assert not _index_names(url) & {"ix_dify_logs_input_trgm", "ix_dify_logs_output_trgm"}


def test_search_indexes_are_refused_on_sqlite(tmp_path):
    result = _run(
        "db", "search-index", "create", CHATSPAN_DATABASE_URL=f"sqlite:///{tmp_path}/c.db"
    )
    assert result.returncode == 2
    assert "PostgreSQL" in result.stderr


def _index_names(url: str) -> set[str]:
    import psycopg

    from pgdb import libpq_dsn

    with psycopg.connect(libpq_dsn(url)) as connection:
        rows = connection.execute("select indexname from pg_indexes where tablename = 'dify_logs'")
        return {row[0] for row in rows}


def test_a_command_whose_extra_is_missing_names_the_extra(monkeypatch, capsys):
    from chatspan import cli

    monkeypatch.setattr(cli, "_installed", lambda module: module != "uvicorn")
    assert cli.main(["serve"]) == 2
    error = capsys.readouterr().err
    assert error.strip() == (
        "chatspan: chatspan serve needs the 'api' extra (missing: uvicorn): "
        "pip install 'chatspan[api]'"
    )
