"""The guard service's systemd unit as installed, and systemd's own verdicts on it.

install-host and the Ansible role render ``data/systemd/ncdma-guardd.service.in`` by
replacing @PREFIX@; this does the same, then asks ``systemd-analyze`` (Debian's systemd
package) to verify it and to rate its exposure (``security --offline=yes``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "data/systemd/ncdma-guardd.service.in"


def render_unit(prefix: str, directory: Path) -> Path:
    """The unit with ``prefix``, written as ``directory``/ncdma-guardd.service."""
    unit = directory / "ncdma-guardd.service"
    unit.write_text(TEMPLATE.read_text().replace("@PREFIX@", prefix))
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze ARGS``; a missing tool is an AssertionError that says what to do."""
    try:
        return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                              timeout=60, check=False)
    except FileNotFoundError:
        raise AssertionError("systemd-analyze is missing: install Debian's systemd package "
                             "(scripts/bootstrap does)") from None


def exposure(unit: Path) -> tuple[float | None, str]:
    """systemd's exposure rating of ``unit`` (0 safest, 10 worst), and its full report."""
    done = analyze("security", "--offline=yes", str(unit))
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    return (float(found.group(1)) if found else None), done.stdout + done.stderr
