"""Benchmark of the host probe and `ncdma check`, against baselines measured in the same run.

Targets (issue 2): the probe itself <= 20 ms, `ncdma check` <= 300 ms wall (medians).
Baselines: a bare KVM_CREATE_VM + close (the floor under the probe) and a bare
interpreter start (the floor under any Python command). Run: .venv/bin/python -m bench.check
"""

from __future__ import annotations

import argparse
import sys

from ncdma.kvm.device import KvmDevice
from ncdma.kvm.probe import probe_kernel
from bench.timing import command, median_ms, print_rows

PROBE_TARGET_MS = 20.0
CHECK_TARGET_MS = 300.0


def bare_create_vm() -> None:
    """Open /dev/kvm, create a VM, close both: what any probe must at least do."""
    with KvmDevice() as kvm, kvm.create_vm():
        pass


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
    return print_rows(f"median of {runs} runs", rows)


if __name__ == "__main__":
    sys.exit(main())
