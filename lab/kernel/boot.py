"""Boot a lab kernel under TCG with this machine's root shared read-only, collect the report.

The guest (``-cpu max``: AMD with SVM and nested paging under TCG) gets the host's ``/``
over virtio-9p with ``readonly=on``, the checkout likewise (at its own path: a clone under
/tmp would be hidden by the guest's tmpfs there), and a per-run writable share. Its /init (init.sh) runs
``python -m lab.kernel.inside`` from this checkout, which writes ``report.json`` into the
share and powers off. The serial console goes to ``console.log`` in the run directory.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError, tail
from lab.kernel.initramfs import build_initramfs
from lab.kernel.recipe import Recipe, Variant

QEMU = "/usr/bin/qemu-system-x86_64"
REPO = Path(__file__).resolve().parents[2]
REPORT_FILE = "report.json"
CONSOLE_FILE = "console.log"
GUEST_MEMORY = "2G"
GUEST_CPUS = 2


@dataclass(frozen=True)
class NestedRun:
    """A finished nested run: the guest's report and what it cost."""

    recipe: Recipe
    report: dict[str, Any]
    seconds: float
    console: Path


def tcg_argv(kernel: Path, initramfs: Path, share: Path, console: Path,
             append: str) -> list[str]:
    """The outer QEMU's command line: TCG, ``kernel`` with ``append``, the three 9p shares
    (this machine's root and the checkout, read-only; the run's report directory), a serial
    log."""
    return [QEMU, "-accel", "tcg", "-cpu", "max", "-smp", str(GUEST_CPUS), "-m", GUEST_MEMORY,
            "-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
            "-serial", f"file:{console}",
            "-kernel", str(kernel), "-initrd", str(initramfs),
            "-append", f"console=ttyS0 panic=-1 lab_python={sys.executable} lab_repo={REPO} "
                       f"{append}",
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-fsdev", f"local,id=repo,path={REPO},security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=repo,mount_tag=repo",
            "-fsdev", f"local,id=report,path={share},security_model=none",
            "-device", "virtio-9p-pci,fsdev=report,mount_tag=report"]


def qemu_argv(recipe: Recipe, initramfs: Path, share: Path, console: Path) -> list[str]:
    """:func:`tcg_argv` for ``recipe``'s kernel and its driver's parameters."""
    selftest = Recipe(Variant.PATCHED, recipe.source_version).selftest  # the same in both
    return tcg_argv(recipe.bzimage, initramfs, share, console,
                    f"lab_kernel={recipe.variant.value} lab_selftest={selftest}")


def boot_for_report(argv: list[str], what: str, run_dir: Path,
                    timeout: float) -> tuple[dict[str, Any], float]:
    """Run the outer QEMU ``argv`` (its share and console in ``run_dir``); the report the
    guest wrote and the seconds it took.

    :raise LabError: When QEMU fails or times out, or the guest wrote no report; the
        message carries the console's tail.
    """
    share, console = run_dir / "share", run_dir / CONSOLE_FILE
    started = time.monotonic()
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}'s nested run took over {timeout:.0f} s; console ({console}):"
                       f"\n{tail(console, 40)}") from None
    try:
        report = json.loads((share / REPORT_FILE).read_text())
    except (OSError, ValueError) as err:
        raise LabError(f"{what}'s nested run wrote no report ({err}); QEMU exited "
                       f"{done.returncode} {done.stderr.strip()}; console ({console}):"
                       f"\n{tail(console, 40)}") from None
    return report, time.monotonic() - started


def report_share(run_dir: Path) -> tuple[Path, Path]:
    """The run's report share (made empty of a report) and its console log."""
    share = run_dir / "share"
    share.mkdir(parents=True, exist_ok=True)
    (share / REPORT_FILE).unlink(missing_ok=True)
    return share, run_dir / CONSOLE_FILE


def run_nested(recipe: Recipe, run_dir: Path, timeout: float) -> NestedRun:
    """Boot ``recipe``'s kernel, let the driver run, return its report.

    :raise LabError: When the kernel is not built, QEMU fails or times out, or the guest
        wrote no report; the message carries the console's tail.
    """
    if not recipe.bzimage.exists():
        raise LabError(f"the {recipe.variant.value} kernel is not built: "
                       "run `python3 -m lab.kernel build`")
    share, console = report_share(run_dir)
    report, seconds = boot_for_report(qemu_argv(recipe, build_initramfs(), share, console),
                                      f"the {recipe.variant.value} kernel", run_dir, timeout)
    return NestedRun(recipe, report, seconds, console)
