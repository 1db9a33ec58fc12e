"""The wheel carries every module, migration, example and admin page file."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_wheel_carries_everything_the_package_needs(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("chatspan-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "chatspan").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    expected |= {f"chatspan/examples/{path.name}" for path in (ROOT / "examples").glob("*.py")}
    assert expected - packaged == set()
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in packaged if n.endswith("entry_points.txt")))
        .decode()
    )
    for name in (
        "chatspan_postgres",
        "chatspan_supabase",
        "opentelemetry_instrumentor",
        "opentelemetry_distro",
    ):
        assert name in entry_points
