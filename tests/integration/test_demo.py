"""The README's main-job command runs end to end on the lab."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_main_job(lab) -> None:
    done = subprocess.run([sys.executable, "-m", "lab.demo"], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    out = done.stdout
    assert "ncdma check inside h1" in out and "QEMU            10.0." in out
    assert "BAR 4:  65536 KiB  64-bit prefetchable memory" in out
    assert "BAR 0:   8192 KiB" in out
    assert "h1: mode audit (requested enforce), devices video0" in out
    assert "guard: alive" in out and "video0 vram (0000:00:02.0/vga.vram)" in out
    assert "every journaled slot matches a KVM range in QEMU's flat view" in out
    assert "ncdma-demo -> qemu+ssh://127.0.0.12/system: migrated (copy)" in out
    assert "now running on h2" in out and "now running on h1" in out
    assert "the guard there tagged the new vram slot" in out
    h2_status = out.split("ncdma status on h2")[1].split("ncdma migrate h2 -> h1")[0]
    assert "tag       -     video0 vram (0000:00:02.0/vga.vram)" in h2_status
    assert "flushed with clflush" in out and "tagged slots" in out
    assert lab.is_up(), "the demo leaves a lab it found up as it was"
