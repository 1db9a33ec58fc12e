"""schemathesis against the live service's /openapi.json: no input makes it answer 5xx
or a response its own schema does not allow (PostgreSQL and SQLite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seed import seed
from servers import clean_env, run_chatspan_serve

pytestmark = pytest.mark.slow
ADMIN_KEY = "schemathesis-admin-key-0123456789"
BIN = Path(sys.executable).parent


def test_schemathesis_finds_no_server_error_and_no_schema_violation(database_url, tmp_path):
    seed(database_url)
    env = clean_env(CHATSPAN_DATABASE_URL=database_url, CHATSPAN_ADMIN_API_KEYS=ADMIN_KEY)
    with run_chatspan_serve(tmp_path, env) as server:
        result = subprocess.run(
            [
                str(BIN / "st"),
                "run",
                f"{server.base_url}/openapi.json",
                "--header",
                f"Authorization: Bearer {ADMIN_KEY}",
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
                "--max-examples",
                "40",
                "--seed",
                "4711",
                "--generation-allow-x00",
                "true",
                "--request-timeout",
                "10",
            ],
            env={**env, "NO_COLOR": "1"},
            cwd=tmp_path,  # schemathesis keeps a cache where it runs
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "passed" in report.lower()
    assert "Traceback" not in server.log()
