"""chatspan's Supabase migration on PostgreSQL set up as Supabase sets it up: every
role sees exactly what its policies allow, and applying the file twice changes nothing."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from pgdb import libpq_dsn, scratch_database
from supabase_platform import apply_migration, install_platform


@pytest.fixture(scope="module")
def supabase_db(postgres_server):
    with scratch_database(postgres_server, "supabase") as url:
        dsn = libpq_dsn(url)
        install_platform(dsn)
        apply_migration(dsn)
        with psycopg.connect(dsn, autocommit=True) as connection:
            for user, kind in [
                ("alice", "Timeout"),
                ("alice", "Timeout"),
                ("bob", "KeyError"),
                (None, "Boot"),
            ]:
                connection.execute(
                    "insert into public.error (id, type_error, user_id) values (%s, %s, %s)",
                    (uuid.uuid4(), kind, user),
                )
            connection.execute(
                "insert into public.dify_logs (id, user_id, input_text) values (%s, 'alice', 'hi')",
                (uuid.uuid4(),),
            )
        yield dsn


def _as(dsn: str, role: str, sql: str, params=(), sub: str | None = None):
    """Run `sql` as PostgREST would for a request with this role and JWT subject."""
    claims = {"role": role, **({"sub": sub} if sub else {})}
    with psycopg.connect(dsn) as connection, connection.transaction():
        connection.execute(
            "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
        )
        connection.execute(f"set local role {role}")
        return connection.execute(sql, params).fetchall()


def test_anon_sees_nothing_and_cannot_write(supabase_db):
    for table in ("public.error", "public.dify_logs", "public.chatspan_recent_errors"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(supabase_db, "anon", f"select * from {table}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(
            supabase_db,
            "anon",
            "insert into public.error (id) values (gen_random_uuid()) returning id",
        )


def test_a_user_sees_only_their_own_rows(supabase_db):
    users = _as(supabase_db, "authenticated", "select user_id from public.error", sub="alice")
    assert users == [("alice",), ("alice",)]
    assert (
        _as(supabase_db, "authenticated", "select user_id from public.dify_logs", sub="bob") == []
    )
    assert _as(supabase_db, "authenticated", "select count(*) from public.error", sub="carol") == [
        (0,)
    ]


def test_a_user_cannot_insert_even_their_own_rows(supabase_db):
    spoof = "insert into public.error (id, user_id, type_error) values (gen_random_uuid(), 'alice', 'x')"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(supabase_db, "authenticated", spoof + " returning id", sub="alice")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(supabase_db, "authenticated", "delete from public.error returning id", sub="alice")


def test_the_service_role_sees_and_writes_everything(supabase_db):
    assert _as(supabase_db, "service_role", "select count(*) from public.error") == [(4,)]
    inserted = _as(
        supabase_db,
        "service_role",
        "insert into public.error (id, type_error) values (gen_random_uuid(), 'Fresh') returning type_error",
    )
    assert inserted == [("Fresh",)]
    _as(
        supabase_db,
        "service_role",
        "delete from public.error where type_error = 'Fresh' returning id",
    )


def test_the_views_apply_the_callers_row_level_security(supabase_db):
    by_type = _as(
        supabase_db,
        "authenticated",
        "select type_error, errors from public.chatspan_errors_by_type_day order by 1",
        sub="alice",
    )
    assert by_type == [("Timeout", 2)]
    recent = _as(
        supabase_db, "authenticated", "select user_id from public.chatspan_recent_errors", sub="bob"
    )
    assert recent == [("bob",)]
    everything = _as(
        supabase_db, "service_role", "select sum(errors) from public.chatspan_errors_by_type_day"
    )
    assert everything == [(4,)]


def test_applying_the_migration_twice_changes_nothing(supabase_db):
    def state():
        with psycopg.connect(supabase_db) as connection:
            return (
                connection.execute(
                    "select tablename, policyname, roles::text, cmd, qual from pg_policies "
                    "where schemaname = 'public' order by 1, 2"
                ).fetchall(),
                connection.execute(
                    "select table_name, grantee, privilege_type from information_schema.role_table_grants "
                    "where table_schema = 'public' order by 1, 2, 3"
                ).fetchall(),
                connection.execute(
                    "select indexname from pg_indexes where schemaname = 'public' order by 1"
                ).fetchall(),
                connection.execute("select count(*) from public.error").fetchall(),
            )

    before = state()
    apply_migration(supabase_db)
    assert state() == before
