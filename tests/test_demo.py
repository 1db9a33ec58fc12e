"""`chatspan demo` on a bare machine: the embedded SQLite default, no settings."""

from __future__ import annotations

import os
import subprocess
import sys

from rows import count_rows


def test_demo_records_chats_and_errors_into_sqlite_by_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATSPAN_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "chatspan.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "chatspan.db").exists()
    url = f"sqlite:///{tmp_path / 'chatspan.db'}"
    assert count_rows(url, "dify_logs") == 3
    assert count_rows(url, "error") == 2
    assert "How do I reset my password?" in result.stdout
    assert "TimeoutError" in result.stdout
