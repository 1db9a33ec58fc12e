"""The parts of a Supabase project that chatspan's migration relies on, on a plain
PostgreSQL database: its roles, the auth helpers as Supabase defines them, and the
default privileges Supabase gives new tables. Tests apply chatspan's real migration on
top and check every role's view.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

# chatspan's Supabase migrations, in the order the Supabase CLI applies them.
MIGRATIONS = sorted((Path(__file__).parent.parent / "supabase" / "migrations").glob("*.sql"))

# Roles are cluster-wide: created once, if missing.
ROLES = """
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator noinherit login;
  end if;
end $$;
grant anon, authenticated, service_role to authenticator;
"""

# Per database: the auth schema's helpers (from Supabase's auth migrations) and the
# grants Supabase makes.
DATABASE = """
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

create or replace function auth.uid() returns uuid language sql stable as $$
  select nullif(
    coalesce(
      current_setting('request.jwt.claim.sub', true),
      (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')
    ), ''
  )::uuid
$$;

create or replace function auth.role() returns text language sql stable as $$
  select nullif(
    coalesce(
      current_setting('request.jwt.claim.role', true),
      (current_setting('request.jwt.claims', true)::jsonb ->> 'role')
    ), ''
  )::text
$$;

create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

grant execute on function auth.uid(), auth.role(), auth.jwt() to anon, authenticated, service_role;

alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
"""


def install_platform(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(ROLES)
        connection.execute(DATABASE)


def apply_migration(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        for migration in MIGRATIONS:
            connection.execute(migration.read_text())
