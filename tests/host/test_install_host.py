"""scripts/install-host on this machine, which is not a lab host: the lab's stand-in flag is
refused before anything is installed."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_install_host_refuses_the_lab_stand_in_outside_the_lab(tmp_path) -> None:
    assert not Path("/etc/ncdma-lab-host").exists(), "this machine must not be a lab host"
    prefix = tmp_path / "prefix"
    done = subprocess.run([str(REPO / "scripts/install-host"), "--prefix", str(prefix),
                           "--lab-stand-in"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "--lab-stand-in is for ncdma's lab only" in done.stderr
    assert not prefix.exists()
