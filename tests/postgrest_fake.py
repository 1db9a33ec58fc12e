"""A PostgREST stand-in for tests: Supabase's hosted REST service cannot run here.

It is built to PostgREST's documented contract for what chatspan uses, and backed by
real PostgreSQL with Supabase's roles (see supabase_platform.py):

- the gateway's key check: ``apikey`` must be the project's anon, service_role or
  ``sb_secret_`` key (401 otherwise); a JWT in ``Authorization: Bearer`` picks the role
  and claims (legacy keys are JWTs themselves);
- ``POST /rest/v1/<table>?on_conflict=id`` with a JSON array: inserted through
  ``json_populate_recordset`` as the request's role, with ``request.jwt.claims`` set, in
  one transaction; ``Prefer: resolution=ignore-duplicates`` is ON CONFLICT DO NOTHING;
  ``return=minimal`` answers 201 with no body;
- PostgREST's errors: PGRST102 (objects with different keys), PGRST204 (unknown
  column), PGRST205 (unknown table), 42501 as 401/403, and PostgreSQL's codes for
  other refusals, all as ``{"code", "message", "details", "hint"}``.

Faults can be planned: answer 429 (with Retry-After), 503, or hang, for the next N
requests or for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import jwt
import psycopg
import uvicorn
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

JWT_SECRET = "postgrest-fake-jwt-secret-0123456789abcdef"  # a test secret, not a real one
ANON_KEY = jwt.encode({"role": "anon", "iss": "supabase"}, JWT_SECRET, algorithm="HS256")
SERVICE_KEY = jwt.encode({"role": "service_role", "iss": "supabase"}, JWT_SECRET, algorithm="HS256")
SECRET_KEY = "sb_secret_" + "T" * 32  # the new key format, as a placeholder


@dataclass
class Faults:
    """What the next requests should suffer: a list of 429 / 503 / "hang", or a window."""

    planned: list[int | str] = field(default_factory=list)
    until: float = 0.0
    during: int | str = 503
    retry_after: str | None = "0"
    hang_s: float = 30.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> int | str | None:
        with self.lock:
            if self.planned:
                return self.planned.pop(0)
        return self.during if time.monotonic() < self.until else None


@dataclass
class Calls:
    requests: list[dict] = field(default_factory=list)


def make_app(dsn: str, faults: Faults, calls: Calls) -> Starlette:
    columns_cache: dict[str, set[str]] = {}

    def columns(table: str) -> set[str]:
        if table not in columns_cache:
            with psycopg.connect(dsn) as connection:
                rows = connection.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'public' and table_name = %s",
                    (table,),
                ).fetchall()
            columns_cache[table] = {r[0] for r in rows}
        return columns_cache[table]

    async def insert(request: Request) -> Response:
        table = request.path_params["table"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await request.body()
        calls.requests.append(
            {"table": table, "headers": headers, "body": body, "at": time.monotonic()}
        )
        fault = faults.next()
        if fault == "hang":
            await asyncio.sleep(faults.hang_s)
            return Response(status_code=504)
        if isinstance(fault, int):
            extra = (
                {"Retry-After": faults.retry_after} if fault == 429 and faults.retry_after else {}
            )
            return JSONResponse({"message": "injected"}, status_code=fault, headers=extra)
        role_and_claims = _authenticate(headers)
        if isinstance(role_and_claims, Response):
            return role_and_claims
        role, claims = role_and_claims
        return await asyncio.to_thread(
            _insert, dsn, table, body, headers, request.query_params, role, claims, columns
        )

    return Starlette(routes=[Route("/rest/v1/{table}", insert, methods=["POST"])])


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "details": None, "hint": None}, status_code=status
    )


def _authenticate(headers: dict[str, str]) -> tuple[str, dict] | Response:
    apikey = headers.get("apikey")
    if not apikey:
        return JSONResponse({"message": "No API key found in request"}, status_code=401)
    if apikey not in (ANON_KEY, SERVICE_KEY, SECRET_KEY):
        return JSONResponse({"message": "Invalid API key"}, status_code=401)
    bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
    if apikey == SECRET_KEY and not bearer:
        return "service_role", {"role": "service_role"}
    token = bearer or apikey
    try:
        claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.PyJWTError as failure:
        return _error(401, "PGRST301", f"JWT invalid: {failure}")
    return claims.get("role", "anon"), claims


def _insert(dsn, table, body, headers, query, role, claims, columns) -> Response:
    known = columns(table)
    if not known:
        return _error(
            404, "PGRST205", f"Could not find the table 'public.{table}' in the schema cache"
        )
    try:
        rows = json.loads(body)
    except ValueError:
        return _error(400, "PGRST102", "Empty or invalid json")
    rows = rows if isinstance(rows, list) else [rows]
    keys = set(rows[0]) if rows else set()
    if any(set(row) != keys for row in rows):
        return _error(400, "PGRST102", "All object keys must match")
    unknown = sorted(keys - known)
    if unknown:
        return _error(
            400,
            "PGRST204",
            f"Could not find the '{unknown[0]}' column of '{table}' in the schema cache",
        )
    ignore = "resolution=ignore-duplicates" in headers.get("prefer", "")
    target = sql.Identifier(table)
    names = sql.SQL(", ").join(map(sql.Identifier, sorted(keys)))
    statement = sql.SQL(
        "insert into public.{t} ({c}) select {c} from json_populate_recordset(null::public.{t}, %s)"
    ).format(t=target, c=names)
    if query.get("on_conflict") and ignore:
        statement += sql.SQL(" on conflict ({}) do nothing").format(
            sql.Identifier(query["on_conflict"])
        )
    try:
        with psycopg.connect(dsn) as connection, connection.transaction():
            connection.execute(
                "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
            )
            connection.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
            connection.execute(statement, (json.dumps(rows),))
    except psycopg.errors.InsufficientPrivilege as failure:
        return _error(401 if role == "anon" else 403, "42501", str(failure).splitlines()[0])
    except psycopg.Error as failure:
        status = 409 if isinstance(failure, psycopg.errors.UniqueViolation) else 400
        return _error(status, failure.sqlstate or "-", str(failure).splitlines()[0])
    return Response(status_code=201)


@contextlib.contextmanager
def running(dsn: str, port: int) -> Iterator[tuple[str, Faults, Calls]]:
    """Serve the stand-in on 127.0.0.1:`port` in a thread; yields its URL."""
    faults, calls = Faults(), Calls()
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(dsn, faults, calls),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the PostgREST stand-in did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", faults, calls
    finally:
        faults.planned.clear()
        faults.until = 0
        server.should_exit = True
        thread.join(timeout=10)
