"""The admin query API over a seeded store, on PostgreSQL and SQLite: every endpoint and
filter, both kinds of paging, statistics, errors in the request, and the auth matrix."""

from __future__ import annotations

import math
import time
from collections import Counter
from datetime import datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from chatspan.config import ApiSettings
from chatspan.query_api import create_app
from chatspan.query_api.state import state_of
from chatspan.store.engine import make_engine
from chatspan.store.queries import Cursor
from chatspan.store.tables import dify_logs, error
from chatspan.store.writer import RecordWriter

from seed import BASE, chat_span, newest_first, seed

ADMIN_KEY = "admin-key-for-tests-0123456789"
VALID_CURSOR = Cursor(BASE, "00000000-0000-0000-0000-000000000000").encode()
JWT_SECRET = "jwt-secret-for-tests-0123456789abcdef"
CHATS = "/console/api/admin/chat-logs"
ERRORS = "/console/api/admin/error-logs"
GROUPS = "/console/api/admin/error-groups"
STATS = "/console/api/admin/log-stats"


def history(user: str) -> str:
    return f"/console/api/admin/users/{user}/chat-history"


@pytest.fixture
def store(database_url):
    chats, errors = seed(database_url)
    return database_url, chats, errors


@pytest.fixture
def api(store):
    url, _chats, _errors = store
    settings = ApiSettings(
        database_url=url,
        admin_api_keys=(ADMIN_KEY,),
        jwt_secret=JWT_SECRET,
        trace_url_template="http://jaeger.local:16686/trace/{trace_id}",
    )
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client
    state_of(app).engine.dispose()


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["data"]]


def _walk(api, path: str, params: dict) -> list[str]:
    """Every page by cursor."""
    ids, cursor = [], None
    while True:
        body = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})}).json()
        ids += [row["id"] for row in body["data"]]
        cursor = body["next_cursor"]
        assert (cursor is not None) == body["has_more"]
        if not cursor:
            return ids


def test_chat_logs_newest_first_with_every_column(api, store):
    _url, chats, _ = store
    response = api.get(CHATS, params={"per_page": 100})
    assert _ids(response) == newest_first(chats)
    body = response.json()
    assert (body["total"], body["total_capped"], body["has_more"]) == (60, False, False)
    row = next(r for r in body["data"] if r["id"] == chats[7].id)
    assert row["user_id"] == "user-2"
    assert row["input_text"] == "Question 7 about login"
    assert row["latency_ms"] == 170.0
    assert row["total_tokens"] == 21
    assert row["trace_url"] == f"http://jaeger.local:16686/trace/{chats[7].trace_id}"
    assert row["created_at"].startswith("2026-11-02T18:00:00.000123")
    assert set(row) == {column.name for column in dify_logs.columns} | {"trace_url"}


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"user_id": "user-3"}, lambda c: c.user_id == "user-3"),
        ({"app_id": "app-b"}, lambda c: c.app_id == "app-b"),
        ({"conversation_id": "conv-4"}, lambda c: c.conversation_id == "conv-4"),
        ({"status": "error"}, lambda c: c.status == "error"),
        ({"status": "cancelled"}, lambda c: c.status == "cancelled"),
        ({"q": "BILLING"}, lambda c: "billing" in c.input_text),
        ({"q": "100%"}, lambda c: "100%" in c.input_text),
        ({"q": "answer 4"}, lambda c: "answer 4" in c.output_text.lower()),
        (
            {"since": "2026-11-05T00:00:00Z", "until": "2026-11-08T00:00:00+00:00"},
            lambda c: BASE + timedelta(days=4) <= c.created_at < BASE + timedelta(days=7),
        ),
        (
            {"since": "2026-11-05T02:00:00+02:00"},
            lambda c: c.created_at >= BASE + timedelta(days=4),
        ),
        (
            {"user_id": "user-1", "app_id": "app-a"},
            lambda c: c.user_id == "user-1" and c.app_id == "app-a",
        ),
        ({"user_id": "nobody"}, lambda c: False),
    ],
)
def test_chat_log_filters(api, store, params, keep):
    _url, chats, _ = store
    expected = newest_first([c for c in chats if keep(c)])
    assert _ids(api.get(CHATS, params={**params, "per_page": 100})) == expected
    assert api.get(CHATS, params=params).json()["total"] == len(expected)


def test_page_numbers_and_cursors_cover_every_row_once(api, store):
    _url, chats, _ = store
    expected = newest_first(chats)
    by_page = []
    for page in range(1, 5):
        body = api.get(CHATS, params={"page": page, "per_page": 17}).json()
        by_page += [r["id"] for r in body["data"]]
        assert body["has_more"] == (page < 4)
    assert by_page == expected
    assert _walk(api, CHATS, {"per_page": 7}) == expected
    assert _walk(api, CHATS, {"per_page": 1, "user_id": "user-0"}) == newest_first(
        [c for c in chats if c.user_id == "user-0"]
    )


def test_cursor_pages_stay_exact_while_rows_arrive(api, store):
    url, chats, _ = store
    expected = newest_first(chats)
    writer = RecordWriter(make_engine(url, timeout_s=10))
    seen, cursor, extra = [], None, 1000
    newer_ids, late_ids_ahead, late_ids_behind = set(), set(), set()
    while True:
        params = {"per_page": 9, **({"cursor": cursor} if cursor else {})}
        body = api.get(CHATS, params=params).json()
        seen += [r["id"] for r in body["data"]]
        # Between pages, new chats arrive: one newer than everything, and a late export
        # from the middle of the seeded days, ahead of the cursor or already behind it.
        newer, newer_chat = chat_span(extra, BASE + timedelta(days=40, seconds=extra))
        late, late_chat = chat_span(extra + 1, BASE + timedelta(days=7, seconds=extra))
        writer.write([newer, late])
        newer_ids.add(newer_chat.id)
        if body["data"] and late_chat.created_at < _created_at(body["data"][-1]):
            late_ids_ahead.add(late_chat.id)  # older than the page's end: still to come
        else:
            late_ids_behind.add(late_chat.id)
        extra += 2
        cursor = body["next_cursor"]
        if not cursor:
            break
    writer.engine.dispose()
    assert len(seen) == len(set(seen)), "a row came twice"
    assert [i for i in seen if i in set(expected)] == expected, "a row was skipped or misplaced"
    assert late_ids_ahead and late_ids_behind, "the late rows fell on both sides of the cursor"
    assert late_ids_ahead <= set(seen), "a late row ahead of the cursor was skipped"
    assert not (late_ids_behind | newer_ids) & set(seen), "a row behind the cursor came back"


def _created_at(row: dict) -> datetime:
    return datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))


def test_error_logs_and_their_filters(api, store):
    _url, _chats, errors = store
    assert _ids(api.get(ERRORS, params={"per_page": 100})) == newest_first(errors)
    for params, keep in [
        ({"type_error": "ValueError"}, lambda e: e.type_error == "ValueError"),
        ({"node": "llm"}, lambda e: e.node == "llm"),
        ({"user_id": "user-1"}, lambda e: e.user_id == "user-1"),
        ({"app_id": "app-a"}, lambda e: e.app_id == "app-a"),
        ({"until": "2026-11-05T00:00:00Z"}, lambda e: e.created_at < BASE + timedelta(days=4)),
    ]:
        expected = newest_first([e for e in errors if keep(e)])
        assert _ids(api.get(ERRORS, params={**params, "per_page": 100})) == expected, params
    first = api.get(ERRORS, params={"type_error": "TimeoutError", "per_page": 1}).json()["data"][0]
    same = _ids(api.get(ERRORS, params={"fingerprint": first["fingerprint"], "per_page": 100}))
    assert same == newest_first([e for e in errors if e.type_error == "TimeoutError"])
    assert _walk(api, ERRORS, {"per_page": 4}) == newest_first(errors)
    assert set(first) == {column.name for column in error.columns} | {"trace_url"}


def test_error_groups(api, store):
    _url, _chats, errors = store
    body = api.get(GROUPS).json()
    by_type = Counter(e.type_error for e in errors)
    assert {(g["type_error"], g["count"]) for g in body["data"]} == set(by_type.items())
    counts = [g["count"] for g in body["data"]]
    assert counts == sorted(counts, reverse=True)
    for group in body["data"]:
        members = [e for e in errors if e.type_error == group["type_error"]]
        newest = max(members, key=lambda e: e.created_at)
        assert group["users_affected"] == len({e.user_id for e in members if e.user_id})
        assert group["first_seen"].startswith(
            min(e.created_at for e in members).strftime("%Y-%m-%dT%H:%M")
        )
        assert group["last_seen"].startswith(newest.created_at.strftime("%Y-%m-%dT%H:%M"))
        assert group["sample_message"] == newest.error_message
        assert group["sample_id"] == newest.id
        assert group["sample_trace_url"].endswith(newest.trace_id)
    by_last_seen = api.get(GROUPS, params={"sort": "last_seen"}).json()["data"]
    assert [g["last_seen"] for g in by_last_seen] == sorted(
        (g["last_seen"] for g in by_last_seen), reverse=True
    )
    paged = api.get(GROUPS, params={"per_page": 2}).json()
    assert len(paged["data"]) == 2 and paged["has_more"] is True


def test_one_users_history(api, store):
    _url, chats, _ = store
    assert _ids(api.get(history("user-2"), params={"per_page": 100})) == newest_first(
        [c for c in chats if c.user_id == "user-2"]
    )
    assert _ids(api.get(history("user-2"), params={"conversation_id": "conv-3"})) == newest_first(
        [c for c in chats if c.user_id == "user-2" and c.conversation_id == "conv-3"]
    )


def _percentile(values: list[float], fraction: float, interpolate: bool) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    if not interpolate:
        return ordered[round(position)]
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_log_stats_over_a_window(api, store, database_url):
    _url, chats, errors = store
    since, until = BASE + timedelta(days=2), BASE + timedelta(days=12)
    body = api.get(STATS, params={"since": since.isoformat(), "until": until.isoformat()}).json()
    inside = [c for c in chats if since <= c.created_at < until]
    errors_inside = [e for e in errors if since <= e.created_at < until]
    assert body["totals"] == {
        "chats": len(inside),
        "errors": len(errors_inside),
        "users": len({c.user_id for c in inside}),
        "conversations": len({c.conversation_id for c in inside}),
    }
    assert body["error_rate"] == pytest.approx(
        sum(c.status == "error" for c in inside) / len(inside)
    )
    assert body["tokens"] == {
        "input": sum(c.input_tokens for c in inside),
        "output": sum(c.output_tokens for c in inside),
        "total": sum(c.input_tokens + c.output_tokens for c in inside),
    }
    assert {(t["type_error"], t["count"]) for t in body["errors_by_type"]} == set(
        Counter(e.type_error for e in errors_inside).items()
    )
    top = Counter(c.user_id for c in inside)
    assert [u["chats"] for u in body["top_users"]] == sorted(top.values(), reverse=True)
    assert body["bucket"] == "day"
    assert len(body["series"]) == 10
    assert sum(b["chats"] for b in body["series"]) == len(inside)
    assert sum(b["errors"] for b in body["series"]) == len(errors_inside)
    day3 = body["series"][1]
    assert day3["start"].startswith("2026-11-04T00:00:00")
    assert day3["chats"] == sum(1 for c in inside if c.created_at.date() == day3_date(day3))
    interpolate = database_url.startswith("postgresql")
    latencies = [c.latency_ms for c in inside]
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert body["latency_ms"][name] == pytest.approx(
            _percentile(latencies, fraction, interpolate)
        )


def day3_date(bucket):
    from datetime import date

    return date.fromisoformat(bucket["start"][:10])


def test_log_stats_by_hour_for_short_windows_and_30_days_by_default(api):
    short = api.get(
        STATS, params={"since": "2026-11-03T00:00:00Z", "until": "2026-11-04T00:00:00Z"}
    )
    body = short.json()
    assert body["bucket"] == "hour"
    assert len(body["series"]) == 24
    assert sum(b["chats"] for b in body["series"]) == 4
    default = api.get(STATS).json()
    assert default["bucket"] == "day"
    assert len(default["series"]) in (30, 31)


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        (CHATS, {"per_page": 101}, "less than or equal to 100"),
        (CHATS, {"per_page": 0}, "greater than or equal to 1"),
        (CHATS, {"page": 0}, "greater than or equal to 1"),
        (CHATS, {"page": -3}, "greater than or equal to 1"),
        (CHATS, {"since": "yesterday"}, "datetime"),
        (CHATS, {"since": "2026-02-30T00:00:00Z"}, "datetime"),
        (CHATS, {"cursor": "not-a-cursor"}, "cursor"),
        (CHATS, {"cursor": "WyJ4IiwgInkiXQ"}, "cursor"),
        (CHATS, {"status": "great"}, "ok"),
        (CHATS, {"user_id": "a\x00b"}, "pattern"),
        (CHATS, {"since": "2026-11-05T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "earlier"),
        (
            ERRORS,
            {
                "page": 2,
                "cursor": VALID_CURSOR,
            },
            "not both",
        ),
        (GROUPS, {"sort": "random"}, "count"),
        (STATS, {"since": "0001-01-01T00:00:00Z"}, "at most"),
        (STATS, {"until": "0001-01-02T00:00:00Z"}, "range"),
    ],
)
def test_bad_parameters_are_422_with_a_reason(api, path, params, reason):
    response = api.get(path, params=params)
    assert response.status_code == 422, response.text
    assert reason in response.text


def test_health_and_an_unreachable_database(api):
    health = api.get("/healthz").json()
    assert (health["status"], health["database"]) == ("ok", "reachable")
    assert health["spool"]["queues"] == []
    broken = create_app(
        ApiSettings(
            database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
            admin_api_keys=(ADMIN_KEY,),
            query_timeout_s=2,
        )
    )
    with TestClient(broken, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        health = client.get("/healthz")
        listing = client.get(CHATS)
    assert health.status_code == 503
    assert listing.status_code == 503
    assert listing.headers["retry-after"]


# -- the auth matrix -----------------------------------------------------------------


def _token(claims: dict, secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, secret, algorithm=algorithm)


ADMIN_ENDPOINTS = [CHATS, ERRORS, GROUPS, STATS]


@pytest.mark.parametrize(
    "credential",
    [
        None,
        "wrong-admin-key-0123456789",
        ADMIN_KEY + "x",
        "expired",
        "forged",
        "none-algorithm",
        "no-expiry",
    ],
)
def test_bad_credentials_are_401_everywhere(api, credential):
    tokens = {
        "expired": _token({"sub": "user-1", "exp": int(time.time()) - 10}),
        "forged": _token({"sub": "user-1"}, secret="another-secret-0123456789abcdef"),
        "none-algorithm": jwt.encode(
            {"sub": "user-1", "exp": int(time.time()) + 600}, None, algorithm="none"
        ),
        "no-expiry": jwt.encode({"sub": "user-1"}, JWT_SECRET, algorithm="HS256"),
    }
    token = tokens.get(credential, credential)
    headers = {"Authorization": f"Bearer {token}"} if token else {"Authorization": ""}
    for path in [*ADMIN_ENDPOINTS, history("user-1")]:
        response = api.get(path, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_user_token_reads_its_own_history_only(api, store):
    _url, chats, _ = store
    own = {"Authorization": f"Bearer {_token({'sub': 'user-1'})}"}
    response = api.get(history("user-1"), headers=own)
    assert _ids(response) == newest_first([c for c in chats if c.user_id == "user-1"])[:20]
    assert api.get(history("user-2"), headers=own).status_code == 403
    for path in ADMIN_ENDPOINTS:
        assert api.get(path, headers=own).status_code == 403, path


def test_a_dify_console_token_names_the_account_in_user_id(api):
    dify_style = _token({"user_id": "user-4", "sub": "Console API Passport", "iss": "SELF_HOSTED"})
    headers = {"Authorization": f"Bearer {dify_style}"}
    assert api.get(history("user-4"), headers=headers).status_code == 200
    assert api.get(history("Console API Passport"), headers=headers).status_code == 403


def test_the_user_claim_can_be_configured(store):
    url, _chats, _ = store
    settings = ApiSettings(database_url=url, jwt_secret=JWT_SECRET, jwt_user_claim="email")
    app = create_app(settings)
    token = _token({"email": "user-3", "user_id": "someone-else", "sub": "x"})
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get(history("user-3")).status_code == 200
        assert client.get(history("someone-else")).status_code == 403
    state_of(app).engine.dispose()
