"""python3 -m lab, as a person runs it from the repo root."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_exec_runs_inside_and_returns_the_status(lab) -> None:
    result = lab_cli("exec", "h2", "--", "hostname")
    assert (result.returncode, result.stdout.strip()) == (0, "h2")
    assert lab_cli("exec", "h1", "--", "sh", "-c", "exit 3").returncode == 3


def test_status_json(lab) -> None:
    records = json.loads(lab_cli("status", "--json").stdout)
    assert [r["host"] for r in records] == ["h1", "h2"]
    for record in records:
        assert record["running"] and record["libvirt_answers"] and record["ssh_answers"]
        assert record["uri"] == lab.host(record["host"]).uri


def test_up_reports_a_running_lab(lab) -> None:
    result = lab_cli("up")
    assert result.returncode == 0
    assert "h1 already up" in result.stdout and "h2 already up" in result.stdout
