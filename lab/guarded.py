"""A guarded QEMU on this machine, without libvirt: the guard service, a plan, the wrapper.

This is what libvirt does on a host (tests/integration does it through libvirt): the
hook writes a plan, libvirt execs the wrapper with QEMU's arguments, the wrapper attaches
the guard through the service. Here the test writes the plan the hook would write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ncdma.model.plan import Plan
from ncdma.model.policy import Method, PolicyMode
from ncdma.model.verdict import Mode
from ncdma.linux.pidfd import alive
from ncdma.settings import load_settings
from ncdma.store.state import write_plan

QEMU = "/usr/bin/qemu-system-x86_64"
WRAPPER = Path(sys.executable).with_name("ncdma-qemu")
NOBODY = (65534, 65534)


def as_user(uid: int, gid: int) -> list[str]:
    """The command prefix that runs a program as ``uid``:``gid`` with no other groups."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


class GuardedHost:
    """A state directory, a config naming it, and a running guard service."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "ncdma.conf"
        self.config.write_text(f"[ncdma]\nstate_dir = {root}/state\nlog_file = {root}/ncdma.log\n"
                               f"syslog = no\nqemu = {QEMU}\n"
                               f"qemu_group = {NOBODY[1]}\n")
        self.env = {**os.environ, "NCDMA_CONFIG": str(self.config)}
        self.settings = load_settings(self.config)
        self.service: subprocess.Popen[bytes] | None = None

    def start_service(self, **environment: str) -> None:
        """Start `ncdma guardd` (``environment`` added to its own, e.g. NCDMA_FAULT_FILE)."""
        self.settings.guard_socket.unlink(missing_ok=True)
        self.service = subprocess.Popen([sys.executable, "-m", "ncdma", "guardd"],
                                        env={**self.env, **environment},
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.settings.guard_socket.exists():
            assert time.monotonic() < deadline, "the guard service did not start"
            time.sleep(0.05)

    def use_preload(self, library: Path) -> None:
        """Point the wrappers at method vm's preload library ``library`` (settings
        ``preload``); the wrapper reads its settings at each start."""
        with self.config.open("a") as config:
            config.write(f"preload = {library}\n")

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.terminate()
            self.service.wait(10)

    def plan(self, mode: Mode, bars: Sequence[str] = ("vram",), require: bool = False,
             emulator: str = QEMU, user: tuple[int, int] = (0, 0),
             method: Method = Method.SLOT) -> str:
        """Write the plan the prepare hook would write (QEMU runs as ``user``); return the
        domain's UUID."""
        domain = str(uuid.uuid4())
        write_plan(self.settings, Plan(f"vm-{domain[:8]}", domain, PolicyMode.ENFORCE, mode,
                                       require, tuple(bars), "refuse", self.settings.flag,
                                       emulator, ("video0",), (), qemu_uid=user[0],
                                       qemu_gid=user[1], wrapper=str(WRAPPER), method=method,
                                       requested_method=method))
        return domain

    def wrapper_argv(self, domain: str, *qemu_args: str) -> list[str]:
        """The wrapper's command line as libvirt would give it (QEMU's own arguments)."""
        return [str(WRAPPER), "-uuid", domain, "-machine", "pc,accel=kvm", "-display", "none",
                "-nodefaults", *qemu_args]

    def guard_pid(self, domain: str) -> int | None:
        """The pid in the domain's guard.pid, if any."""
        try:
            return int((self.settings.domain_dir(domain) / "guard.pid").read_text().split()[0])
        except (OSError, ValueError):
            return None

    def journal(self, domain: str) -> dict[str, Any]:
        return json.loads((self.settings.domain_dir(domain) / "slots.json").read_text())

    def final_journal(self, domain: str, timeout: float = 10.0) -> dict[str, Any]:
        """The journal once the domain's guard has ended (its QEMU exited): the guard saves
        its last table after QEMU's last answer, so reading earlier races with that save."""
        deadline = time.monotonic() + timeout
        while (pid := self.guard_pid(domain)) is not None and alive(pid):
            assert time.monotonic() < deadline, f"the guard of {domain} did not end"
            time.sleep(0.02)
        return self.journal(domain)

    def log(self) -> str:
        path = self.root / "ncdma.log"
        return path.read_text() if path.exists() else ""


@contextmanager
def guarded_host(root: Path) -> Iterator[GuardedHost]:
    host = GuardedHost(root)
    host.start_service()
    try:
        yield host
    finally:
        host.stop_service()  # guards are separate processes: each ends with its QEMU


@contextmanager
def bystander(setup: str) -> Iterator[tuple[int, int]]:
    """A root process that is no QEMU: it runs Python ``setup`` (which sets ``address``),
    then waits. Yields (pid, address): the memory an attack must not reach."""
    code = f"import ctypes, mmap, time\n{setup}\nprint(address, flush=True)\ntime.sleep(300)\n"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.pid, int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()
