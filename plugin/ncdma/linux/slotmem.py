"""A tagged slot's memory, mapped into this process, read and written with cache flushes.

The CPU cache must be written back and invalidated around every read and write of
memory a non-snooping device uses (see :mod:`ncdma.linux.cacheflush`), and CLFLUSHOPT works
by virtual address: this process needs a mapping of the very pages QEMU maps.
/proc/PID/map_files/START-END opens the object behind one of QEMU's mappings (a memfd,
a shared-memory file, a GPU buffer) and mmap maps the same pages here. QEMU's private
anonymous memory has no such object: QEMU >= 10.0 allocates device RAM (vga.vram) as
shared memory when started with ``-machine aux-ram-share=on``, which the wrapper adds for
domains whose policy is migration='copy'.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ncdma.errors import SlotMemoryError
from ncdma.linux.cacheflush import flush_range


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    shared: bool
    offset: int
    path: str


def _mappings(pid: int) -> list[Mapping]:
    found = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(part, 16) for part in fields[0].split("-"))
        found.append(Mapping(start, end, fields[1][3] == "s", int(fields[2], 16),
                             fields[5] if len(fields) > 5 else ""))
    return found


def find_mapping(pid: int, hva: int, size: int) -> Mapping:
    """The mapping of ``pid`` that holds [hva, hva + size).

    :raise SlotMemoryError: When none does, or it is private anonymous memory.
    """
    try:
        mappings = _mappings(pid)
    except OSError as err:
        raise SlotMemoryError(f"cannot read the mappings of QEMU {pid}: {err.strerror}",
                              "is QEMU still running?", pid, hva) from None
    for mapping in mappings:
        if mapping.start <= hva and hva + size <= mapping.end:
            if not mapping.shared or not mapping.path:
                raise SlotMemoryError(
                    f"QEMU {pid} holds {hva:#x}+{size:#x} in private anonymous memory, which "
                    f"no other process can map to flush CPU caches around the copy",
                    "start the domain with policy migration='copy' on QEMU >= 10.0 (the "
                    "wrapper then adds -machine aux-ram-share=on)", pid, hva)
            return mapping
    raise SlotMemoryError(f"QEMU {pid} maps nothing at {hva:#x}+{size:#x}",
                          "the slot is gone: check `ncdma status`", pid, hva)


class SlotMemory:
    """A slot's pages, mapped shared into this process."""

    def __init__(self, pid: int, hva: int, size: int) -> None:
        mapping = find_mapping(pid, hva, size)
        path = f"/proc/{pid}/map_files/{mapping.start:x}-{mapping.end:x}"
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise SlotMemoryError(f"cannot open {path} ({mapping.path}): {err.strerror}",
                                  "run as root (map_files needs CAP_SYS_ADMIN)", pid,
                                  hva) from None
        try:
            # populated up front: a page fault per 4 KiB would cost more than the copy
            self.map = mmap.mmap(descriptor, size, mmap.MAP_SHARED | mmap.MAP_POPULATE,
                                 mmap.PROT_READ | mmap.PROT_WRITE,
                                 offset=mapping.offset + hva - mapping.start)
        finally:
            os.close(descriptor)
        self.size = size
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))

    def close(self) -> None:
        """Unmap (QEMU's own mapping is untouched)."""
        self.map.close()

    def copy_out(self, target: int) -> None:
        """Copy the slot, as DRAM holds it (caches invalidated first), to ``target``."""
        flush_range(self.address, self.size)
        ctypes.memmove(target, self.address, self.size)

    def copy_in(self, source: int) -> None:
        """Copy ``size`` bytes from ``source`` into the slot and write them back to DRAM,
        where a non-snooping device reads."""
        ctypes.memmove(self.address, source, self.size)
        flush_range(self.address, self.size)

    def digest(self) -> str:
        """sha256 of the slot as DRAM holds it."""
        flush_range(self.address, self.size)
        with memoryview(self.map) as view:
            return hashlib.sha256(view).hexdigest()


@dataclass(frozen=True)
class Transfer:
    """What one flushed copy moved, and how fast (checksum excluded)."""

    size: int
    sha256: str
    seconds: float


def preallocate(path: Path, size: int) -> None:
    """Create ``path`` with ``size`` bytes allocated, so that a later capture into it
    (while the guest is paused) pays no page allocation."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(descriptor, 0, size)
    finally:
        os.close(descriptor)


def capture(pid: int, hva: int, size: int, target: Path) -> Transfer:
    """Copy a slot of QEMU ``pid`` into the file ``target`` (preallocated), caches flushed."""
    memory = SlotMemory(pid, hva, size)
    descriptor = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(descriptor).st_size < size:
            os.posix_fallocate(descriptor, 0, size)
        with mmap.mmap(descriptor, size, mmap.MAP_SHARED | mmap.MAP_POPULATE) as output:
            address = ctypes.addressof(ctypes.c_char.from_buffer(output))
            began = time.perf_counter()
            memory.copy_out(address)
            seconds = time.perf_counter() - began
            with memoryview(output) as view:
                digest = hashlib.sha256(view).hexdigest()
    finally:
        os.close(descriptor)
        memory.close()
    return Transfer(size, digest, seconds)


def restore(pid: int, hva: int, data: bytes) -> Transfer:
    """Write ``data`` into a slot of QEMU ``pid`` with cache flushes, then checksum the slot
    as DRAM holds it: what a device would now read."""
    memory = SlotMemory(pid, hva, len(data))
    try:
        began = time.perf_counter()
        memory.copy_in(ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0)
        seconds = time.perf_counter() - began
        digest = memory.digest()
    finally:
        memory.close()
    return Transfer(len(data), digest, seconds)
