"""Which statements put rows into the tables, as the database itself saw them.

A statement-level trigger on each table records ``current_query()``: the text the client
sent, so a COPY shows as COPY and an INSERT as INSERT, whatever the client code says
about itself. Rows a rolled-back transaction wrote leave no record either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from pgdb import libpq_dsn

_TABLES = ("dify_logs", "error")
_LOG = "chatspan_test_statements"


@dataclass(frozen=True)
class StatementLog:
    url: str  # the store, as a psycopg 3 URL

    def statements(self) -> list[tuple[str, str]]:
        """(table, first word of the statement) for each statement that inserted, in order."""
        with psycopg.connect(libpq_dsn(self.url)) as connection:
            rows = connection.execute(f"SELECT table_name, query FROM {_LOG} ORDER BY n").fetchall()
        return [(table, query.split(None, 1)[0].upper()) for table, query in rows]

    def clear(self) -> None:
        with psycopg.connect(libpq_dsn(self.url)) as connection:
            connection.execute(f"TRUNCATE {_LOG}")


@contextlib.contextmanager
def statement_log(url: str) -> Iterator[StatementLog]:
    """Record the statements that insert into the tables of the store at `url`."""
    with psycopg.connect(libpq_dsn(url), autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {_LOG} (n serial, table_name text, query text)")
        connection.execute(
            f"CREATE FUNCTION {_LOG}_add() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN INSERT INTO {_LOG} (table_name, query) VALUES (TG_TABLE_NAME, current_query()); "
            "RETURN NULL; END $$"
        )
        for table in _TABLES:
            connection.execute(
                f'CREATE TRIGGER {_LOG} AFTER INSERT ON "{table}" '
                f"FOR EACH STATEMENT EXECUTE FUNCTION {_LOG}_add()"
            )
        try:
            yield StatementLog(url)
        finally:
            for table in _TABLES:
                connection.execute(f'DROP TRIGGER {_LOG} ON "{table}"')
            connection.execute(f"DROP FUNCTION {_LOG}_add()")
            connection.execute(f"DROP TABLE {_LOG}")
