"""Attacks on the query service (`chatspan serve`) and `chatspan export`, each answered:
spreadsheet formulas in CSV exports, forged input at the edges of time, browser security
headers and the API docs page, exports whose database fails, what /healthz tells
strangers, Host headers (redirects, DNS rebinding of an --insecure server), and the
permissions of an exported file."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from chatspan.config import ApiSettings
from chatspan.query_api import create_app

from seed import BASE, seed
from servers import clean_env

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
    app.state.engine.dispose()


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
