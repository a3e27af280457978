"""A guarded QEMU whose guest makes its memslot calls when the test says so.

The guest is bartoggle with GO=1: it maps vram once, then waits for a byte on COM1 (a
unix socket here) before toggling the vram BAR TOGGLES times and exiting with
STATUS_TOGGLE_DONE. A test attaches the guard, does something to it (kills it, stops it,
fills the state directory...), then lets the guest go: every memslot call from then on
needs an answer, and QEMU finishes only if it gets them.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from lab.guests.build import build_guest
from lab.guarded import GuardedHost
from ncdma.kvm.abi import KVM_SET_USER_MEMORY_REGION
from ncdma.linux.syscalls import NR_EXIT_GROUP, NR_IOCTL

# How long a test waits for a QEMU that should finish before calling it hung: a detector
# of hangs (QEMU needs a few seconds here), not a measure of speed (bench/guard.py is).
HANG_S = 30
ISA_EXIT = ("-device", "isa-debug-exit,iobase=0x501,iosize=2")
VRAM_GPA = 0xE0000000  # bartoggle's BAR_ADDR


def blocked_threads(pid: int) -> list[str]:
    """QEMU's threads waiting in a trapped call (memslot ioctl or exit_group), described."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "syscall").read_text().split()
        except OSError:
            continue
        if fields[:1] == [str(NR_EXIT_GROUP)] or (fields[:1] == [str(NR_IOCTL)] and fields[2:3]
                                                  == [f"{KVM_SET_USER_MEMORY_REGION:#x}"]):
            found.append(f"thread {task.name}: {' '.join(fields[:4])}")
    return found


class GatedQemu:
    """bartoggle (GO=1) under the wrapper, with the serial socket the test writes to."""

    def __init__(self, host: GuardedHost, domain: str, scratch: Path, **guest: int) -> None:
        """``guest``: bartoggle's build symbols, GO=1 and TOGGLES=50 unless given."""
        self.host = host
        self.domain = domain
        self.serial = scratch / "go.sock"
        self.stderr_path = scratch / "qemu.stderr"
        image = build_guest("bartoggle", scratch, **{"TOGGLES": 50, "GO": 1, **guest})
        argv = host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga,id=video0",
                                 *ISA_EXIT, "-bios", str(image), "-chardev",
                                 f"socket,id=go,path={self.serial},server=on,wait=off",
                                 "-serial", "chardev:go")
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(argv, env=host.env, stderr=stderr)

    def vram_slot(self) -> dict[str, object] | None:
        """The vram slot (at bartoggle's BAR address) in the guard's journal on disk."""
        try:
            slots = self.host.journal(self.domain)["slots"]
        except (OSError, ValueError):
            return None
        return next((slot for slot in slots if slot["gpa"] == VRAM_GPA), None)

    def wait_guarded(self, decision: str | None = None) -> int:
        """Until the guard serves QEMU and has journaled the vram slot (with ``decision``,
        if given); the guard's pid."""
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"QEMU ended early: {self.stderr()}"
            pid = self.host.guard_pid(self.domain)
            slot = self.vram_slot()
            if pid is not None and slot is not None and decision in (None, slot["decision"]):
                return pid
            assert time.monotonic() < deadline, f"the guard never journaled the vram slot " \
                                                f"({decision or 'any decision'})"
            time.sleep(0.1)

    def go(self) -> None:
        """Let the guest make its memslot calls."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(str(self.serial))
            connection.sendall(b"g")
            time.sleep(0.2)  # QEMU reads the byte before the socket closes

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def finish(self) -> int:
        """QEMU's exit status; fails the test, naming the blocked threads, if QEMU hangs."""
        try:
            return self.process.wait(HANG_S)
        except subprocess.TimeoutExpired:
            blocked = blocked_threads(self.process.pid)
            self.process.kill()
            self.process.wait()
            pytest.fail(f"QEMU hung for {HANG_S} s: {'; '.join(blocked) or 'no trapped call'}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
