"""Scratch PostgreSQL databases for tests and benchmarks: created on entry, dropped on exit."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from sqlalchemy.engine import make_url

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str:
    return os.environ.get("CHATSPAN_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string (no +driver)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_unreachable_reason(url: str) -> str | None:
    try:
        psycopg.connect(libpq_dsn(url), connect_timeout=3).close()
    except psycopg.Error as error:
        return f"PostgreSQL is not reachable at {make_url(url).render_as_string()}: {error}"
    return None


@contextlib.contextmanager
def scratch_database(url: str, tag: str, driver: str = "psycopg") -> Iterator[str]:
    """A new, empty database next to the one `url` names; yields its SQLAlchemy URL."""
    name = f"chatspan_{tag}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_dsn(url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(url)
            .set(drivername=f"postgresql+{driver}", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(libpq_dsn(url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
