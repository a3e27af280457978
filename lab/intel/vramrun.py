"""The Intel lab's guarded run with the real flag: QEMU 7.2 wrapped by ncdma in enforce mode,
vramfill (GO=1) under kvm_intel, inside the Bochs guest (lab/intel/inside.py runs it).

The guard service, a plan in ``mode`` (bars=vram) and the wrapper, as lab/guarded.py does
without libvirt. The guest maps vram's BAR (a slot the guard leaves untouched: QEMU 7.2
reports no host addresses, the guard learns vram's from a layout read while that slot
exists, at the next memslot call) and waits for a byte on COM1, which this driver sends once
the guard's layout surely knows the slot; then it maps vram's start at 0xa0000 (VGA chain-4:
a new slot of vram's memory, which the guard tags with the real flag), writes 64 KiB there
and reads them back. The driver runs ``ncdma status`` while the VM lives, then sends another
byte and the guest exits through isa-debug-exit: it never halts (a nested guest's halt stalls
the Bochs guest, see the README). While Python works the VM is paused through a QMP monitor
of the driver's own (the guest's waits are busy ones). Also the start-up cost of
ncdma (startup_run, an opt-in step): the same tiny guest (portio) run by QEMU alone and
through the wrapper. Progress
lines go to stderr (the console), where the host stamps them with wall time: the Bochs
guest's clock runs far slower than the wall's.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from ncdma.cli.status import status_text
from ncdma.model.verdict import Mode
from ncdma.store.status import domain_status, status_json
from ncdma.store.state import FLATVIEW_FILE

from lab.guarded import QEMU, GuardedHost, guarded_host
from lab.kernel.inside import GUARDED_TIMEOUT_S, ISA_EXIT, read_journal

CHAIN4_GPA = 0xA0000  # vramfill's window on vram's first 64 KiB
BAR_GPA = 0xE0000000  # vramfill's BAR_ADDR


def _timed_run(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=GUARDED_TIMEOUT_S, check=False)
    return {"exit": done.returncode, "seconds": round(time.monotonic() - started, 1),
            "stderr": done.stderr.decode(errors="replace")[-2000:]}


def startup_cost(host: GuardedHost, portio: Path, mode: Mode) -> dict[str, Any]:
    """The same guest (portio: a few port writes, then exit) run by QEMU alone and through
    the wrapper with its guard: the difference is what ncdma adds to a VM's start. Under
    Bochs the guest's clock is no measure: the progress lines' wall times are (the host
    stamps each console line it reads)."""
    started = time.monotonic()
    qemu_args = ["-m", "128", "-device", "virtio-vga,id=video0", *ISA_EXIT, "-bios", str(portio)]
    _progress(started, "portio by QEMU alone: start")
    plain = _timed_run([QEMU, "-machine", "pc,accel=kvm", "-display", "none", "-nodefaults",
                        *qemu_args], host.env)
    _progress(started, f"portio by QEMU alone: exit {plain['exit']}")
    wrapped = _timed_run(host.wrapper_argv(host.plan(mode), *qemu_args), host.env)
    _progress(started, f"portio through ncdma: exit {wrapped['exit']}")
    return {"plain": plain, "wrapped": wrapped,
            "added_seconds": round(wrapped["seconds"] - plain["seconds"], 1)}


def _until(condition: Callable[[], Any], qemu: subprocess.Popen[bytes], deadline: float) -> Any:
    """``condition()``'s first true value while QEMU runs and time remains, else None."""
    while time.monotonic() < deadline and qemu.poll() is None:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    return None


def _send_byte(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.connect(str(path))
        channel.sendall(b"g")
        time.sleep(0.5)  # QEMU reads it before the connection ends


def _slot_at(host: GuardedHost, domain: str, gpa: int) -> dict[str, Any] | None:
    slots = (read_journal(host, domain) or {}).get("slots", [])
    return next((slot for slot in slots if slot["gpa"] == gpa), None)


class FlatViewWatch:
    """True once the guard's layout surely knows the vram slot: a flat view it saved shows
    vram mapped at its BAR, and then it saved another, or SETTLE_S passed.

    QEMU < 8.0 gives vram's host address only through a layout read while the vram slot
    existed; the guard reads the layout, then the flat view, again SETTLE_S at most after a
    slot changes (then only every 10 s). The first flat view showing vram may come from a
    round whose layout was read just before the slot: the next round, which that slot's
    creation asked for, is then due within the guard's minimum interval (0.2 s); SETTLE_S
    leaves it time. (Under Bochs the guest's clock runs far slower than the wall's.)"""

    SETTLE_S = 0.5

    def __init__(self, host: GuardedHost, domain: str) -> None:
        self.path = host.settings.domain_dir(domain) / FLATVIEW_FILE
        self.first: tuple[float, float] | None = None  # (its mtime, when it was seen)

    def __call__(self) -> bool:
        try:
            saved = self.path.stat().st_mtime
            ranges = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        if not any(r["start"] == BAR_GPA and r["kvm"] and "vram" in r["name"] for r in ranges):
            return False
        if self.first is None:
            self.first = (saved, time.monotonic())
        return saved != self.first[0] or time.monotonic() - self.first[1] >= self.SETTLE_S


def _progress(started: float, what: str) -> None:
    """One line on the console (init.sh sends the step's stderr there) as the run goes."""
    print(f"lab-progress {time.monotonic() - started:.1f} s: {what}", file=sys.stderr,
          flush=True)


def _status(host: GuardedHost, domain: str, started: float) -> dict[str, Any]:
    """What ``ncdma status`` prints (text and JSON) and its exit status, computed in this
    process with the command's own functions: each Python command costs tens of seconds
    under Bochs."""
    status = domain_status(host.settings, domain)
    healthy = status.guard_alive and not status.mismatches
    _progress(started, f"ncdma status: guard alive {status.guard_alive}, mismatches "
                       f"{list(status.mismatches)}")
    return {"status": 0 if healthy else 1, "json": status_json(status),
            "text": status_text(status)}


def vram_write_run(host: GuardedHost, image: Path, mode: Mode) -> dict[str, Any]:
    """vramfill (GO=1) under the wrapper in ``mode``: see the module's docstring.

    While Python works (the guard learning the layout, ``ncdma status``) the VM is paused
    through a QMP monitor of the test's own: the guest's wait is a busy one, and the Bochs
    guest's one CPU would otherwise share its time with it."""
    domain = host.plan(mode)
    serial, monitor = host.root / "go.sock", host.root / "test.qmp"
    stderr = host.root / "qemu.stderr"
    started = time.monotonic()
    deadline = started + GUARDED_TIMEOUT_S
    marks: dict[str, float | None] = {}
    status = None
    with stderr.open("wb") as sink:
        qemu = subprocess.Popen(
            host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga,id=video0", *ISA_EXIT,
                              "-bios", str(image), "-chardev",
                              f"socket,id=go,path={serial},server=on,wait=off",
                              "-serial", "chardev:go",
                              "-qmp", f"unix:{monitor},server=on,wait=off"),
            env=host.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink)
    qmp: QEMUMonitorProtocol | None = None
    try:
        steps: tuple[tuple[str, Callable[[], Any]], ...] = (
            ("bar_journaled", lambda: _slot_at(host, domain, BAR_GPA)),
            ("vram_in_layout", FlatViewWatch(host, domain)),
            ("chain4_journaled", lambda: _slot_at(host, domain, CHAIN4_GPA)))
        for name, condition in steps:
            found = _until(condition, qemu, deadline)
            marks[name] = round(time.monotonic() - started, 1) if found else None
            _progress(started, f"{name}: {bool(found)}")
            if not found:
                break
            if name == "bar_journaled":  # the guest now waits for its byte: pause it
                qmp = QEMUMonitorProtocol(str(monitor))
                qmp.connect()
                qmp.cmd("stop")
            elif name == "vram_in_layout":
                _send_byte(serial)
                qmp.cmd("cont")  # type: ignore[union-attr]
        else:
            time.sleep(0.3)  # the guest's 64 KiB of writes and reads: a blink after the slot
            qmp.cmd("stop")  # type: ignore[union-attr]
            status = _status(host, domain, started)
            marks["status"] = round(time.monotonic() - started, 1)
            _send_byte(serial)
            qmp.cmd("cont")  # type: ignore[union-attr]
        qemu.wait(max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if qmp is not None:
            qmp.close()
        if qemu.poll() is None:
            qemu.kill()
        qemu.wait(30)
    _progress(started, f"QEMU exited {qemu.returncode}")
    return {"exit": qemu.returncode, "marks": marks, "status": status,
            "stderr": stderr.read_text(errors="replace")[-4000:],
            "journal": _final_journal(host, domain), "log": host.log()[-8000:]}


def _final_journal(host: GuardedHost, domain: str) -> dict[str, Any] | None:
    try:
        return host.final_journal(domain, timeout=30)
    except (AssertionError, OSError, ValueError):
        return read_journal(host, domain)


def guarded_run(guests: Path, mode: Mode) -> dict[str, Any]:
    """The vramfill run under a guard service of its own."""
    with guarded_host(Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))) as host:
        return vram_write_run(host, guests / "vramfill.bin", mode)


def startup_run(guests: Path, mode: Mode) -> dict[str, Any]:
    """ncdma's start-up cost (a figure, not a test: run with --steps startup)."""
    started = time.monotonic()
    with guarded_host(Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))) as host:
        _progress(started, "guard service up")
        return startup_cost(host, guests / "portio.bin", mode)
