"""The Intel lab's Python driver: guarded QEMU runs inside the Bochs guest.

init.sh runs ``python -m lab.intel.inside guarded|hostile`` from the checkout (in the
initramfs at its own path); it prints one JSON document between ``lab-json-begin`` and
``lab-json-end`` lines on the console. The guest images were assembled on the host
(lab/intel/image.py puts them in /lab/guests).

- guarded: QEMU 7.2 wrapped by ncdma in enforce mode with the real flag runs vramfill, which
  writes vram through a slot the guard tags, and exits; `ncdma status` while it lives; the
  start-up cost of Python and the guard with ``startup`` (lab/intel/vramrun.py).
- hostile: the same with the hostile guest, which puts the vram BAR over its RAM, spins,
  and exits.
- method-vm: QEMU 7.2 wrapped by ncdma with a method vm plan (enforce, require): the
  wrapper adds the preload library (/lab/preload), which disables
  KVM_X86_QUIRK_IGNORE_GUEST_PAT on the VM fd; the ramtouch guest writes RAM pages and
  exits. Reports QEMU's exit, the guard's journal and `ncdma status`'s text (init.sh
  traces the EPT entries around it).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ncdma.cli.status import status_text
from ncdma.model.policy import Method
from ncdma.model.verdict import Mode
from ncdma.store.status import domain_status

from lab.guarded import guarded_host
from lab.intel.vramrun import guarded_run, startup_run
from lab.kernel.inside import GUARDED_TIMEOUT_S, ISA_EXIT, read_journal

GUESTS_DIR = Path("/lab/guests")
PRELOAD = Path("/lab/preload/libncdma-pat.so")
BEGIN, END = "lab-json-begin", "lab-json-end"


def hostile_run(image: Path) -> dict[str, Any]:
    """The hostile guest (built to exit once it spun with vram over its RAM) under a guarded
    QEMU: QEMU's exit status and the guard's journal. The guest exits rather than halts
    for good: a nested guest's final halt stalls the Bochs guest (see the README)."""
    with guarded_host(Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))) as host:
        domain = host.plan(Mode.ENFORCE)
        done = subprocess.run(
            host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga,id=video0",
                              *ISA_EXIT, "-bios", str(image)),
            env=host.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=GUARDED_TIMEOUT_S,
            check=False)
        return {"exit": done.returncode, "stderr": done.stderr.decode(errors="replace")[-4000:],
                "journal": read_journal(host, domain), "log": host.log()[-6000:]}


def method_vm_run(image: Path) -> dict[str, Any]:
    """``image`` (ramtouch) under QEMU wrapped with method vm, enforce, require: QEMU's
    exit status and stderr, the guard's journal, `ncdma status` (read in this process:
    each Python command costs seconds under Bochs)."""
    with guarded_host(Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))) as host:
        host.use_preload(PRELOAD)
        domain = host.plan(Mode.ENFORCE, require=True, method=Method.VM)
        done = subprocess.run(host.wrapper_argv(domain, "-m", "128", *ISA_EXIT, "-bios",
                                                str(image)),
                              env=host.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=GUARDED_TIMEOUT_S, check=False)
        return {"exit": done.returncode, "stderr": done.stderr.decode(errors="replace")[-4000:],
                "journal": host.final_journal(domain),
                "status": status_text(domain_status(host.settings, domain)),
                "log": host.log()[-6000:]}


def main(argv: list[str] | None = None) -> int:
    """Run one scenario and print its report between the markers."""
    parser = argparse.ArgumentParser(prog="python -m lab.intel.inside", description=__doc__)
    parser.add_argument("scenario", choices=("guarded", "startup", "hostile", "method-vm"))
    parser.add_argument("--guests", type=Path, default=GUESTS_DIR,
                        help="the guest images (default: where the Intel lab puts them)")
    parser.add_argument("--mode", choices=("enforce", "audit"), default="enforce",
                        help="the guarded run's mode (audit: on a kernel without the flag)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.scenario == "guarded":
        report = guarded_run(args.guests, Mode(args.mode))
    elif args.scenario == "startup":
        report = startup_run(args.guests, Mode(args.mode))
    elif args.scenario == "method-vm":
        report = method_vm_run(args.guests / "ramtouch.bin")
    else:
        report = hostile_run(args.guests / "hostile.bin")
    report["seconds"] = round(time.monotonic() - started, 1)
    print(BEGIN, json.dumps(report), END, sep="\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
