"""Did installing chatspan move a pinned version, or break a requirement?

    python tests/pins/unmoved.py PINS FREEZE_BEFORE FREEZE_AFTER CHECK_BEFORE CHECK_AFTER

PINS is a requirements file of the app's pins; the freezes are `pip freeze` before and
after `pip install chatspan`, the checks `pip check` before and after. Prints what moved
or newly broke and exits 1, or prints the pins it verified and exits 0.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_names(requirements: str) -> list[str]:
    names = []
    for line in requirements.splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and (found := _NAME.match(requirement)):
            names.append(canonical(found.group(1)))
    return names


def versions(freeze: str) -> dict[str, str]:
    found = {}
    for line in freeze.splitlines():
        name, separator, version = line.partition("==")
        if separator:
            found[canonical(name)] = version.strip()
    return found


def main(pins: str, before: str, after: str, check_before: str, check_after: str) -> int:
    names = pinned_names(Path(pins).read_text())
    old, new = versions(Path(before).read_text()), versions(Path(after).read_text())
    moved = [f"{n}: {old.get(n)} -> {new.get(n)}" for n in names if old.get(n) != new.get(n)]
    broken_before = set(Path(check_before).read_text().splitlines())
    broken = [
        line
        for line in Path(check_after).read_text().splitlines()
        if line not in broken_before and "No broken requirements" not in line
    ]
    for line in moved:
        print(f"moved: {line}")
    for line in broken:
        print(f"pip check, new: {line}")
    if moved or broken:
        return 1
    print(
        f"{len(names)} pins unmoved, pip check unchanged: "
        + ", ".join(f"{n}=={new.get(n)}" for n in names)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
