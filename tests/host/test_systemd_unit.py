"""The guard service's systemd unit (issue 12): a template that renders, verifies, and is
hardened to an exposure of at most 4.0 by systemd's own measure (printed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "data" / "systemd"
TEMPLATE = SYSTEMD_DIR / "ncdma-guardd.service.in"
PREFIX = str(Path(sys.executable).parent.parent)  # this checkout's venv: bin/ncdma exists
MAX_EXPOSURE = 4.0


def _render(tmp_path: Path) -> Path:
    """The unit as install-host and the Ansible role install it."""
    unit = tmp_path / "ncdma-guardd.service"
    unit.write_text(TEMPLATE.read_text().replace("@PREFIX@", PREFIX))
    return unit


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                              timeout=60, check=False)
    except FileNotFoundError:
        raise AssertionError("systemd-analyze is missing: install Debian's systemd package "
                             "(scripts/bootstrap does)") from None


def test_only_the_template_is_shipped_and_it_verifies_once_rendered(tmp_path) -> None:
    assert TEMPLATE.exists(), "the unit template must carry the .in suffix"
    assert not [path for path in SYSTEMD_DIR.iterdir()
                if path.suffix != ".in" and "@PREFIX@" in path.read_text()]
    unit = _render(tmp_path)
    assert "@PREFIX@" not in unit.read_text()
    done = _analyze("verify", str(unit))
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_units_exposure_is_at_most_4(tmp_path) -> None:
    done = _analyze("security", "--offline=yes", str(_render(tmp_path)))
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    exposure = float(found.group(1))
    print(f"ncdma-guardd.service exposure (systemd-analyze security): {exposure}")
    assert exposure <= MAX_EXPOSURE, done.stdout
