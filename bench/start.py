"""Benchmark: `virsh start` of a firmware-only VM with ncdma enabled vs the same VM without.

Target (issue 3): added wall time <= 250 ms (medians). Both VMs are the lab's virtio-vga
domain on lab host h1, started and destroyed alternately so that drift hits both alike.
Run (as root): .venv/bin/python -m bench.start
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.install import build_wheels, install_ncdma, uninstall_ncdma
from lab.lab import Lab
from bench.timing import lab_up, runs_argument

REPO = Path(__file__).parents[1]
PLAIN, OPTED_IN = "bench-plain", "bench-ncdma"
ADDED_TARGET_MS = 250.0


def start_ms(lab: Lab, name: str) -> float:
    """Wall time of one `virsh start`, then destroy the VM."""
    h1 = lab.host("h1")
    began = time.perf_counter()
    h1.virsh("start", name)
    elapsed = (time.perf_counter() - began) * 1000
    h1.virsh("destroy", name)
    return elapsed


def measure(lab: Lab, runs: int) -> tuple[list[float], list[float]]:
    """Start times of the plain and the opted-in VM, alternately, with ncdma installed."""
    h1 = lab.host("h1")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            build_wheels(REPO, Path(scratch))
            install_ncdma(h1, Path(scratch))
        for name in (PLAIN, OPTED_IN):
            h1.run(["sh", "-c", f"sed 's|<name>lab-virtio-vga</name>|<name>{name}</name>|' "
                                f"/srv/ncdma/xml/examples/lab-virtio-vga.xml > /tmp/{name}.xml "
                                f"&& virsh define /tmp/{name}.xml"], check=True)
        h1.run(["/opt/ncdma/bin/ncdma", "enable", OPTED_IN, "--bars", "vram"], check=True)
        plain, opted_in = [], []
        for _ in range(runs):
            plain.append(start_ms(lab, PLAIN))
            opted_in.append(start_ms(lab, OPTED_IN))
        return plain, opted_in
    finally:
        for name in (PLAIN, OPTED_IN):
            h1.virsh("destroy", name, check=False)
            h1.virsh("undefine", name, check=False)
        uninstall_ncdma(h1)


def main() -> int:
    runs = runs_argument(__doc__, 15)
    with lab_up(REPO) as lab:
        plain, opted_in = measure(lab, runs)
    base, ours = statistics.median(plain), statistics.median(opted_in)
    added = ours - base
    met = added <= ADDED_TARGET_MS
    print(f"virsh start on lab host h1, median of {runs} runs each")
    print(f"  baseline: without ncdma   {base:8.1f} ms")
    print(f"  with ncdma enabled        {ours:8.1f} ms  x{ours / base:.2f} of the baseline")
    print(f"  added                     {added:8.1f} ms  target <= {ADDED_TARGET_MS:.0f} ms: "
          f"{'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
