"""Benchmark of the host probe and `ncdma check`, against baselines measured in the same run.

Targets (issue 2): the probe itself <= 20 ms, `ncdma check` <= 300 ms wall (medians).
Baselines: a bare KVM_CREATE_VM + close (the floor under the probe) and a bare
interpreter start (the floor under any Python command). Run: .venv/bin/python bench/check.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from ncdma.kvm.device import KvmDevice
from ncdma.kvm.probe import probe_kernel

PROBE_TARGET_MS = 20.0
CHECK_TARGET_MS = 300.0


def median_ms(action: Callable[[], object], runs: int) -> float:
    """Median wall time of ``action`` over ``runs`` runs, in milliseconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bare_create_vm() -> None:
    """Open /dev/kvm, create a VM, close both: what any probe must at least do."""
    with KvmDevice() as kvm, kvm.create_vm():
        pass


def command(argv: list[str]) -> Callable[[], object]:
    """A callable running ``argv`` to completion, output discarded."""
    return lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs

    rows = [
        ("baseline: KVM_CREATE_VM + close", median_ms(bare_create_vm, runs), None),
        ("probe_kernel() (in process)", median_ms(probe_kernel, runs), PROBE_TARGET_MS),
        ("baseline: python3 -c pass", median_ms(command([sys.executable, "-c", "pass"]), runs), None),
        ("ncdma check (wall)", median_ms(command([sys.executable, "-m", "ncdma", "check"]), runs),
         CHECK_TARGET_MS),
    ]
    failed = False
    print(f"median of {runs} runs")
    for index, (name, value, target) in enumerate(rows):
        baseline = rows[index - 1][1] if target else None
        ratio = f"  x{value / baseline:.1f} of the baseline above" if baseline else ""
        verdict = ""
        if target:
            ok = value <= target
            failed |= not ok
            verdict = f"  target <= {target:.0f} ms: {'met' if ok else 'MISSED'}"
        print(f"  {name:<34} {value:8.2f} ms{ratio}{verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
