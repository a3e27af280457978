"""Benchmark of the memslot guard on this machine's QEMU under KVM, against plain QEMU.

Targets (issue 4):
- exit path: port-I/O exits per second with the wrapper vs plain QEMU, loss <= 1%
  (per-exit cost from the slope between two loop counts, so start-up cancels out; both
  with QEMU's own -sandbox, as libvirt runs QEMU);
- decision latency in the guard (receive to answer) over >= 1000 slot creates/deletes:
  p50 and p99, p99 <= 200 us;
- QEMU start to QMP-ready, wrapper vs plain: <= 100 ms added;
- the journal's record written ahead of each answer (pwrite + fdatasync) on tmpfs, as the
  state directory /run/ncdma is: its share of the decision latency (issue 13);
- no hang (issue 13): how long QEMU's memslot call waits when its guard is stopped, or
  killed while the call waits, against a healthy guard in the same run: <= 2 s.
The guarded host's state directory is on tmpfs (/dev/shm), as /run is on a host.
Run (as root): .venv/bin/python -m bench.guard
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ncdma.kvm.memslot import Memslot
from ncdma.model.slot import Classification, OwnerKind, SlotDecision, SlotOwner
from ncdma.model.verdict import Mode
from ncdma.store.journal import Journal
from lab.gated import GatedQemu
from lab.guarded import QEMU, GuardedHost, guarded_host
from lab.guests.build import build_guest

# QEMU's own seccomp sandbox, as libvirt starts every QEMU (qemu.conf seccomp_sandbox):
# the baseline is QEMU as it really runs; ncdma's filter stacks on top of it.
SANDBOX = ("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
GUEST = ("-m", "128", "-device", "isa-debug-exit,iobase=0x501,iosize=2", *SANDBOX)
PLAIN = (QEMU, "-machine", "pc,accel=kvm", "-display", "none", "-nodefaults")
SMALL, LARGE = 20_000, 420_000  # ~4 s apart: run-to-run jitter stays well under 1%


def wall(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    subprocess.run(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return time.perf_counter() - began


def per_exit_us(host: GuardedHost, images: dict[int, Path], runs: int) -> dict[bool, float]:
    """Cost of one port-I/O exit, plain (False) and wrapped (True), from the median run times
    of two loop counts. Plain and wrapped runs alternate, so drift hits both alike."""
    times: dict[tuple[bool, int], list[float]] = {}
    for _ in range(runs):
        for count, image in images.items():
            for wrapped in (False, True):
                args = (*GUEST, "-bios", str(image))
                argv = host.wrapper_argv(host.plan(Mode.AUDIT), *args) if wrapped \
                    else [*PLAIN, *args]
                times.setdefault((wrapped, count), []).append(wall(argv, host.env))
    median = {key: statistics.median(values) for key, values in times.items()}
    return {wrapped: (median[wrapped, LARGE] - median[wrapped, SMALL]) / (LARGE - SMALL) * 1e6
            for wrapped in (False, True)}


def qmp_ready_ms(host: GuardedHost, wrapped: bool, scratch: Path) -> float:
    """Spawn to QMP greeting, paused QEMU (-S) as libvirt starts it."""
    path = scratch / "q.sock"
    path.unlink(missing_ok=True)
    args = ("-S", "-m", "128", "-device", "virtio-vga", "-qmp", f"unix:{path},server=on,wait=off")
    argv = host.wrapper_argv(host.plan(Mode.AUDIT), *args) if wrapped else [*PLAIN, *args]
    began = time.perf_counter()
    qemu = subprocess.Popen(argv, env=host.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while qemu.poll() is None:
            try:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(str(path))
                    if client.recv(1):
                        return (time.perf_counter() - began) * 1000
            except OSError:
                time.sleep(0.001)
        raise RuntimeError(f"QEMU exited with {qemu.returncode} before QMP was ready: {argv}")
    finally:
        qemu.kill()
        qemu.wait()


def decision_latency(host: GuardedHost, scratch: Path, toggles: int) -> tuple[int, int, int]:
    """p50, p99 (us) and count of the guard's decisions during BAR toggling in audit mode."""
    image = build_guest("bartoggle", scratch, TOGGLES=toggles)
    domain = host.plan(Mode.AUDIT)
    subprocess.run(host.wrapper_argv(domain, *GUEST, "-device", "virtio-vga", "-bios", str(image)),
                   env=host.env, capture_output=True, check=False)
    journal = host.journal(domain)
    latency = journal["latency_us"]
    return latency["p50"], latency["p99"], sum(journal["counts"].values())


def write_ahead_us(directory: Path, count: int = 5000) -> tuple[float, float]:
    """p50 and p99 (us) of one journal record written ahead of an answer, in ``directory``."""
    journal = Journal(directory, "enforce", 8)
    vram = Memslot(6, 1, 0xE0000000, 0x800000, 0x7F00_0000_0000)
    tag = Classification(SlotDecision.TAG, "virtio-gpu BAR memory selected by the policy",
                         SlotOwner(OwnerKind.VRAM, "video0", 0, "0000:00:02.0/vga.vram"))
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        journal.write_ahead(vram, tag, True)
        samples.append((time.perf_counter() - began) * 1e6)
        journal.record(vram, tag, True)
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98]


def call_wait_s(host: GuardedHost, scratch: Path, trouble: str) -> float:
    """Seconds from the guest's go to QEMU's exit (a few memslot calls) when the guard is
    healthy, SIGSTOPped before the calls, or SIGKILLed while a call waits."""
    qemu = GatedQemu(host, host.plan(Mode.AUDIT), Path(tempfile.mkdtemp(dir=scratch)), TOGGLES=1)
    try:
        guard = qemu.wait_guarded()
        if trouble != "healthy":
            os.kill(guard, signal.SIGSTOP)
        began = time.perf_counter()
        qemu.go()
        if trouble == "killed":
            os.kill(guard, signal.SIGKILL)
        qemu.finish()
        return time.perf_counter() - began
    finally:
        qemu.kill()
        if trouble == "stopped":
            with contextlib.suppress(ProcessLookupError):  # the keeper killed it already
                os.kill(guard, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="b", dir="/dev/shm") as directory, \
            guarded_host(Path(directory)) as host:
        scratch = Path(directory)
        images = {count: build_guest("portio", scratch, COUNT=count) for count in (SMALL, LARGE)}
        exits = per_exit_us(host, images, runs)
        plain_exit, wrapped_exit = exits[False], exits[True]
        plain_ready = statistics.median(qmp_ready_ms(host, False, scratch) for _ in range(runs * 2))
        wrapped_ready = statistics.median(qmp_ready_ms(host, True, scratch) for _ in range(runs * 2))
        p50, p99, decided = decision_latency(host, scratch, 1000)
        ahead50, ahead99 = write_ahead_us(scratch)
        waits = {trouble: statistics.median(call_wait_s(host, scratch, trouble)
                                            for _ in range(runs))
                 for trouble in ("healthy", "stopped", "killed")}
    loss = (wrapped_exit / plain_exit - 1) * 100
    added = wrapped_ready - plain_ready
    rows = [
        ("port-I/O exit, plain QEMU (baseline)", f"{plain_exit:7.2f} us/exit"),
        ("port-I/O exit, wrapped and guarded", f"{wrapped_exit:7.2f} us/exit  loss {loss:+.2f}% "
         f"(target <= 1%: {'met' if loss <= 1 else 'MISSED'})"),
        ("spawn to QMP ready, plain QEMU (baseline)", f"{plain_ready:7.1f} ms"),
        ("spawn to QMP ready, wrapped and guarded", f"{wrapped_ready:7.1f} ms  added {added:+.1f} ms "
         f"(target <= 100 ms: {'met' if added <= 100 else 'MISSED'})"),
        (f"guard decision latency over {decided} decisions", f"p50 {p50} us, p99 {p99} us "
         f"(target p99 <= 200 us: {'met' if p99 <= 200 else 'MISSED'})"),
        ("  of which the journal record written ahead", f"p50 {ahead50:.0f} us, p99 "
         f"{ahead99:.0f} us (pwrite + fdatasync, tmpfs)"),
        ("go to exit, healthy guard (baseline)", f"{waits['healthy']:7.2f} s"),
        ("go to exit, guard SIGSTOPped", f"{waits['stopped']:7.2f} s  added "
         f"{waits['stopped'] - waits['healthy']:+.2f} s (target <= 2 s)"),
        ("go to exit, guard SIGKILLed during a call", f"{waits['killed']:7.2f} s  added "
         f"{waits['killed'] - waits['healthy']:+.2f} s (target <= 2 s)"),
    ]
    print(f"guard benchmark, medians of {runs} runs (QMP ready: {runs * 2})")
    for name, value in rows:
        print(f"  {name:<46} {value}")
    hangs = max(waits["stopped"], waits["killed"]) - waits["healthy"]
    return 0 if loss <= 1 and added <= 100 and p99 <= 200 and hangs <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
