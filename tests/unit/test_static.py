"""Static checks of the package: types (mypy --strict) and lint (ruff: errors, bugbear)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_package_type_checks() -> None:
    done = _run("mypy", "--strict", "--ignore-missing-imports", "--python-version", "3.11",
                "plugin/ncdma")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_code_is_lint_clean() -> None:
    done = _run("ruff", "check", "--select", "F,E9,B", "--ignore", "B905", "--line-length", "100",
                "plugin", "lab", "bench", "tests")
    assert done.returncode == 0, done.stdout + done.stderr
