"""Versions of the host's QEMU and libvirt daemon, asked of the programs themselves."""

from __future__ import annotations

import mmap
import re
import shutil
import subprocess

QEMU_PROGRAMS = ("qemu-system-x86_64", "/usr/libexec/qemu-kvm")
LIBVIRT_PROGRAMS = ("libvirtd", "virtqemud")
_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?)")
_TIMEOUT_S = 5.0


def program_version(candidates: tuple[str, ...]) -> str | None:
    """The version printed by the first of ``candidates`` found, or None if none is installed."""
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            done = subprocess.run([path, "--version"], capture_output=True, text=True,
                                  timeout=_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return f"{name}: no answer to --version"
        found = _VERSION.search(done.stdout)
        return found.group(1) if found else f"{name}: unreadable version"
    return None


def qemu_and_libvirt_versions() -> tuple[str | None, str | None]:
    """QEMU's and libvirt's versions, asked in parallel (each program takes tens of ms)."""
    # Imported here: the hook imports this module for qemu_has_aux_ram_share only.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        qemu = pool.submit(program_version, QEMU_PROGRAMS)
        libvirt = pool.submit(program_version, LIBVIRT_PROGRAMS)
        return qemu.result(), libvirt.result()


def qemu_has_aux_ram_share(emulator: str) -> bool:
    """True if the QEMU binary knows ``-machine aux-ram-share`` (QEMU 10.0 and later).

    Found in the binary's bytes rather than by running it: the hook runs no children.
    """
    try:
        with open(emulator, "rb") as binary, \
                mmap.mmap(binary.fileno(), 0, access=mmap.ACCESS_READ) as content:
            return content.find(b"aux-ram-share") >= 0
    except (OSError, ValueError):
        return False
