"""Benchmark: guest writes to vram under the lab's stand-in flag (KVM_MEM_READONLY, 0x2) vs audit.

The lab's enforce mode sets KVM_MEM_READONLY where a patched kernel would take
KVM_MEM_NON_COHERENT_DMA: every guest write to the tagged slot becomes an MMIO exit that
QEMU completes through its memory API. This measures that it stays correct (the `vramfill`
guest writes a pattern and reads it back; its exit status says whether every dword matched)
and what each write costs: the per-write time from the slope between two write counts
(start-up cancels out), enforce (stand-in flag) against audit (no flag), on QEMU 10.0 in
lab host h1, the wrapper run directly with a plan written for it.
Run (as root, holding the lab lock): .venv/bin/python -m bench.standin
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.timing import lab_up, runs_argument
from lab.host import Host
from lab.install import FLEET_WRAPPER, build_wheels, install_ncdma, uninstall_ncdma
from lab.guests.build import build_guest, exit_code

REPO = Path(__file__).parents[1]
IN_HOST = "/var/lib/ncdma-bench"
SMALL, LARGE = 1024, 16384  # dwords: 4 KiB and 64 KiB (the whole chain-4 window)
CHAIN4 = 0xA0000
STAND_IN_FLAG = 0x2


def write_plan(host: Host, domain: str, mode: str) -> None:
    """The plan the hook writes, with the stand-in flag (forced past the hook's verdict)."""
    host.run(["/opt/ncdma/bin/python3", "-c",
              "from ncdma.model.plan import Plan; from ncdma.model.policy import PolicyMode; "
              "from ncdma.model.verdict import Mode; from ncdma.settings import load_settings; "
              "from ncdma.store.state import write_plan; "
              f"write_plan(load_settings(), Plan('bench-standin', '{domain}', PolicyMode.ENFORCE, "
              f"Mode('{mode}'), False, ('vram',), 'refuse', {STAND_IN_FLAG}, "
              "'/usr/bin/qemu-system-x86_64', ('video0',), ()))"], check=True)


def run_once(host: Host, image: str, mode: str) -> float:
    """Seconds of one guarded QEMU run of ``image``; checks the guest's verdict and the tag."""
    domain = str(uuid.uuid4())
    write_plan(host, domain, mode)
    began = time.perf_counter()
    done = host.run([FLEET_WRAPPER, "-uuid", domain, "-machine", "pc,accel=kvm", "-m", "128",
                     "-display", "none", "-nodefaults", "-device", "virtio-vga,id=video0",
                     "-device", "isa-debug-exit,iobase=0x501,iosize=2", "-bios", image],
                    timeout=300)
    elapsed = time.perf_counter() - began
    if done.returncode != exit_code("STATUS_VRAMFILL_OK"):
        raise SystemExit(f"{mode}: QEMU exited {done.returncode}: {done.stderr.strip()}")
    journal = json.loads((host.root_path / f"run/ncdma/domains/{domain}/slots.json").read_text())
    [alias] = [slot for slot in journal["slots"] if slot["gpa"] == CHAIN4]
    if alias["decision"] != "tag" or alias["flag_set"] != (mode == "enforce"):
        raise SystemExit(f"{mode}: the chain-4 vram slot was journaled {alias}")
    host.run(["rm", "-rf", f"/run/ncdma/domains/{domain}"])
    return elapsed


def per_write_us(host: Host, images: dict[int, str], runs: int) -> dict[str, float]:
    """Cost of one guest dword write to vram in each mode, from median run times."""
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(runs):
        for count, image in images.items():
            for mode in ("audit", "enforce"):
                times.setdefault((mode, count), []).append(run_once(host, image, mode))
    median = {key: statistics.median(values) for key, values in times.items()}
    return {mode: (median[mode, LARGE] - median[mode, SMALL]) / (LARGE - SMALL) * 1e6
            for mode in ("audit", "enforce")}


def main() -> int:
    runs = runs_argument(__doc__, 3)
    with lab_up(REPO) as lab:
        h1 = lab.host("h1")
        try:
            with tempfile.TemporaryDirectory() as scratch:
                build_wheels(REPO, Path(scratch))
                install_ncdma(h1, Path(scratch))
                images = {}
                target = h1.root_path / IN_HOST.lstrip("/")
                target.mkdir(parents=True, exist_ok=True)
                for count in (SMALL, LARGE):
                    image = build_guest("vramfill", Path(scratch), COUNT=count, WAIT=1)
                    (target / image.name).write_bytes(image.read_bytes())
                    images[count] = f"{IN_HOST}/{image.name}"
            cost = per_write_us(h1, images, runs)
        finally:
            uninstall_ncdma(h1)
    print(f"guest dword writes to vram on lab host h1 (QEMU 10.0), median of {runs} runs, "
          f"slope {SMALL}..{LARGE} writes; every run read back what it wrote")
    print(f"  baseline: audit (no flag)          {cost['audit']:8.3f} us per write")
    print(f"  enforce, stand-in flag {STAND_IN_FLAG:#x}         {cost['enforce']:8.3f} us per write"
          f"  x{cost['enforce'] / max(cost['audit'], 1e-3):.0f} of the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
