"""The packages whose versions differ between a lock and an environment (`pip freeze --all` output).

    python lock/compare.py lock/py3.11.txt FREEZE     # exits 1 when any differ

CI uses it to show that a fresh install is exactly the lock; `make drift` to list what the newest versions change.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
NOT_LOCKED = {"pip", "qbench"}  # the installer itself, and the project


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line, names normalised as PEP 503 does."""
    found = (PIN.match(line) for line in path.read_text().splitlines())
    return {re.sub(r"[-_.]+", "-", m[1]).lower(): m[2] for m in found if m}


def differences(lock: dict[str, str], installed: dict[str, str]) -> list[str]:
    names = sorted((set(lock) | set(installed)) - NOT_LOCKED)
    return [f"{name}: {lock.get(name, 'not locked')} -> {installed.get(name, 'not installed')}"
            for name in names if lock.get(name) != installed.get(name)]


def main(lock: str, freeze: str) -> int:
    changed = differences(pins(Path(lock)), pins(Path(freeze)))
    print(f"{len(changed)} package(s) differ from {lock}" + (":" if changed else ""))
    for line in changed:
        print(f"  {line}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
