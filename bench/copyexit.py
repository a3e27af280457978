"""Benchmark: how long a `migration="copy"` QEMU takes to exit on SIGTERM (issue 13, item 3).

Target: within 1 s of SIGTERM when no guard can capture. On lab host h1 (QEMU 10.0 under
KVM, the wrapper traps exit_group for copy VMs), from kill(SIGTERM) to QEMU's exit as its
pidfd reports it, inside h1, median of --runs starts of the lab's virtio-vga domain:

- baseline: the same domain without ncdma;
- a copy VM with a healthy guard and no capture armed (no migration);
- a copy VM with a capture armed, as `ncdma migrate` arms it (the 8 MiB vram slot read at
  exit, caches flushed, checksummed);
- a copy VM with a capture armed and no guard able to run (every guard start fails: the
  test-only fault point guard-start): the keeper answers alone, reads nothing and marks the
  migration not copied.

Run (as root): .venv/bin/python -m bench.copyexit
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.timing import lab_up, print_rows, runs_argument
from lab.host import Host
from lab.install import build_wheels, install_ncdma, uninstall_ncdma
from lab.lab import Lab

REPO = Path(__file__).parents[1]
PREFIX = "/opt/ncdma"
PLAIN, COPY = "bench-exit-plain", "bench-exit-copy"
FAULT = "/run/ncdma/fault"
TARGET_MS = 1000.0
_SIGTERM = """
import os, select, signal, sys, time
pid = int(open(f"/run/libvirt/qemu/{sys.argv[1]}.pid").read())
exited = os.pidfd_open(pid)
began = time.monotonic()
os.kill(pid, signal.SIGTERM)
select.select([exited], [], [], 60)
print((time.monotonic() - began) * 1e3)
"""
_ARM = """
import sys
from ncdma.settings import load_settings
from ncdma.store.capture import arm
from ncdma.store.journal import read_journal
settings = load_settings()
journal = read_journal(settings.domain_dir(sys.argv[1]))
arm(settings, sys.argv[1], journal.selected() if journal else ())
print(len(journal.selected()) if journal else 0)
"""

def _sh(host: Host, command: str) -> str:
    done = host.run(["sh", "-c", command], check=True)
    return str(done.stdout)


def _guardd(host: Host, faults: bool) -> None:
    """(Re)start h1's guard service, with fault injection on or off."""
    _sh(host, "kill -9 $(cat /run/ncdma/guardd.pid) 2>/dev/null; rm -f /run/ncdma/guard.sock")
    env = f"NCDMA_FAULT_FILE={FAULT} " if faults else ""
    _sh(host, f"setsid sh -c 'echo $$ > /run/ncdma/guardd.pid && {env}exec {PREFIX}/bin/ncdma "
              f"guardd' </dev/null >/dev/null 2>&1 &")
    deadline = time.monotonic() + 10
    while not (host.root_path / "run/ncdma/guard.sock").exists():
        assert time.monotonic() < deadline, "guardd did not start"
        time.sleep(0.05)


def _uuid(host: Host, name: str) -> str:
    return host.virsh("domuuid", name).stdout.strip()


def _started(host: Host, name: str, tagged: bool) -> None:
    done = host.virsh("start", name, check=False)
    assert done.returncode == 0, f"virsh start {name}: {done.stderr}"
    deadline = time.monotonic() + 20
    while tagged:
        status = json.loads(host.run([f"{PREFIX}/bin/ncdma", "status", name, "--json"]).stdout)
        slots = (status.get("journal") or {}).get("slots", [])
        if any(slot["decision"] == "tag" for slot in slots):
            return
        assert time.monotonic() < deadline, "the vram slot was never tagged"
        time.sleep(0.1)


def _sigterm_ms(host: Host, name: str) -> float:
    """SIGTERM to exit; then until libvirt has seen the domain stop (not timed)."""
    elapsed = float(host.run(["python3", "-c", _SIGTERM, name], check=True).stdout)
    deadline = time.monotonic() + 30
    while host.virsh("domstate", name, check=False).stdout.strip() != "shut off":
        assert time.monotonic() < deadline, f"libvirt never saw {name} stop"
        time.sleep(0.1)
    return elapsed


def _no_guard(host: Host, uuid: str) -> None:
    """Every guard start fails from now on; the running guard is killed; wait for the
    keeper to answer alone."""
    log = host.root_path / "var/log/ncdma/ncdma.log"
    before = log.read_text().count("no guard could start")
    _sh(host, f"echo guard-start > {FAULT}; "
              f"kill -9 $(cut -d' ' -f1 /run/ncdma/domains/{uuid}/guard.pid)")
    deadline = time.monotonic() + 20
    while log.read_text().count("no guard could start") == before:
        assert time.monotonic() < deadline, "the keeper never answered alone"
        time.sleep(0.05)


def measure(lab: Lab, runs: int) -> dict[str, list[float]]:
    """SIGTERM-to-exit times of each case, the cases alternated run by run."""
    h1 = lab.host("h1")
    times: dict[str, list[float]] = {"plain": [], "guard": [], "capture": [], "no guard": []}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            build_wheels(REPO, Path(scratch))
            install_ncdma(h1, Path(scratch))
        for name in (PLAIN, COPY):
            _sh(h1, f"sed 's|<name>lab-virtio-vga</name>|<name>{name}</name>|' "
                    f"/srv/ncdma/xml/examples/lab-virtio-vga.xml > /tmp/{name}.xml "
                    f"&& virsh define /tmp/{name}.xml")
        h1.run([f"{PREFIX}/bin/ncdma", "enable", COPY, "--bars", "vram", "--migration",
                "copy"], check=True)
        _guardd(h1, faults=True)
        uuid = _uuid(h1, COPY)
        for _ in range(runs):
            _started(h1, PLAIN, tagged=False)
            times["plain"].append(_sigterm_ms(h1, PLAIN))
            for case in ("guard", "capture", "no guard"):
                _started(h1, COPY, tagged=True)
                if case != "guard":
                    h1.run([f"{PREFIX}/bin/python3", "-c", _ARM, uuid], check=True)
                if case == "no guard":
                    _no_guard(h1, uuid)
                times[case].append(_sigterm_ms(h1, COPY))
                _sh(h1, f"rm -f {FAULT}; rm -rf /run/ncdma/migrations/{uuid}")
        return times
    finally:
        for name in (PLAIN, COPY):
            h1.virsh("destroy", name, check=False)
            h1.virsh("undefine", name, check=False)
        _guardd(h1, faults=False)
        uninstall_ncdma(h1)


def main() -> int:
    runs = runs_argument(__doc__, 5)
    with lab_up(REPO) as lab:
        times = measure(lab, runs)
    median = {case: statistics.median(values) for case, values in times.items()}
    return print_rows(f"SIGTERM to QEMU's exit on lab host h1, median of {runs} runs each", [
        ("copy VM, guard alive, no capture armed", median["guard"], None),
        ("copy VM, 8 MiB capture at exit", median["capture"], None),
        ("baseline: QEMU without ncdma", median["plain"], None),
        ("copy VM, no guard can run (not copied)", median["no guard"], TARGET_MS),
    ])


if __name__ == "__main__":
    sys.exit(main())
