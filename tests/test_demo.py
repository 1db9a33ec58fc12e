"""`chatspan demo --no-serve` on a bare machine: the embedded SQLite default, no settings,
the example app under the real launcher, traffic, rows, a summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rows import rows_where
from servers import clean_env

pytestmark = pytest.mark.slow


def test_demo_records_example_traffic_into_sqlite_by_default(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "chatspan"), "demo", "--no-serve"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    url = f"sqlite:///{tmp_path / 'chatspan.db'}"
    assert len(rows_where(url, "dify_logs", user_id="alice")) == 3
    bob = rows_where(url, "dify_logs", user_id="bob")
    assert {row["status"] for row in bob} == {"ok", "error"}
    assert {row["response_mode"] for row in bob} == {"blocking", "streaming"}
    (node_error,) = rows_where(url, "error", node="Fetch weather")
    assert node_error["user_id"] == "dave"
    assert rows_where(url, "error", route="/v1/boom")
    assert "recorded 16 chats and 4 errors" in result.stdout
    assert "chats per user: alice 3, bob 4" in result.stdout
