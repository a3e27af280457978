"""Command line: python3 -m lab.intel build [--kernel K] | run --kernel K [--out DIR]."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab.intel.image import base_archive, python_archive, qemu_archive
from lab.intel.run import run_intel
from lab.kernel.build import build_variants, ensure_packages, source_version
from lab.kernel.commands import build_and_run, dispatch
from lab.kernel.recipe import Recipe, Variant

KERNELS = [variant.value for variant in Variant]
# Debian packages the Intel lab needs besides the kernel build's (scripts/bootstrap has them).
PACKAGES = ("bochs", "bochsbios", "vgabios", "bochs-term", "isolinux", "syslinux-common",
            "xorriso", "strace", "binutils")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m lab.intel", description=__doc__)
    _, run = build_and_run(parser, "--kernel", KERNELS, (
        "build (or find cached) the kernels and images",
        "only this kernel (repeatable; default: all three)",
        "boot a built kernel under Bochs and print its steps"), KERNELS)
    run.add_argument("--steps", help="comma-separated init.sh steps (default: the kernel's; "
                     "e.g. check,qemu-plain)")
    return parser.parse_args(argv)


def _timed(what: str, make: Callable[[], Path]) -> None:
    started = time.monotonic()
    path = make()
    print(f"{what}: ready in {time.monotonic() - started:.1f} s: {path} "
          f"({path.stat().st_size >> 20} MiB)")


def build(kernels: list[str], jobs: int) -> None:
    """Install what is missing, build or find each kernel and image; print what it cost."""
    ensure_packages(PACKAGES)
    build_variants(kernels, jobs, print)
    _timed("initramfs base", base_archive)
    _timed("initramfs python", python_archive)
    _timed("initramfs qemu", qemu_archive)


def run(kernel: str, out: Path | None, timeout: float, steps: str | None) -> None:
    """Boot one kernel under Bochs; print each step's status, times and output."""
    variant = Variant(kernel)
    out = out or Path(tempfile.mkdtemp(prefix="lab-intel-", dir="/tmp"))
    done = run_intel(Recipe(variant, source_version(variant)), out, timeout,
                     tuple(steps.split(",")) if steps else None)
    for seconds, line in done.bochs.marks:
        if line.startswith("lab-progress "):
            print(f"wall {seconds:7.1f} s  {line}")
    for step in done.steps.values():
        print(f"--- {step.name}: status {step.status}, guest {step.guest_seconds} s, "
              f"wall {step.wall_seconds} s")
        print(step.text)
    print(f"kernel {kernel}: Bochs run took {done.bochs.seconds:.1f} s "
          f"(console: {done.bochs.console})", file=sys.stderr)


def main(argv: list[str]) -> int:
    args = parse(argv)
    return dispatch("lab.intel", args.command, lambda: build(args.kernel or KERNELS, args.jobs),
                    lambda: run(args.kernel, args.out, args.timeout, args.steps))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
