"""A tagged slot's memory, mapped into this process, read and written with cache flushes.

The CPU cache must be written back and invalidated around every read and write of
memory a non-snooping device uses (see :mod:`ncdma.cacheflush`), and CLFLUSHOPT works
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

from ncdma.cacheflush import flush_range
from ncdma.errors import NcdmaError


class SlotMemoryError(NcdmaError):
    """A slot's memory cannot be mapped, read or written."""


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
                              "is QEMU still running?") from None
    for mapping in mappings:
        if mapping.start <= hva and hva + size <= mapping.end:
            if not mapping.shared or not mapping.path:
                raise SlotMemoryError(
                    f"QEMU {pid} holds {hva:#x}+{size:#x} in private anonymous memory, which "
                    f"no other process can map to flush CPU caches around the copy",
                    "start the domain with policy migration='copy' on QEMU >= 10.0 (the "
                    "wrapper then adds -machine aux-ram-share=on)")
            return mapping
    raise SlotMemoryError(f"QEMU {pid} maps nothing at {hva:#x}+{size:#x}",
                          "the slot is gone: check `ncdma status`")


class SlotMemory:
    """A slot's pages, mapped shared into this process."""

    def __init__(self, pid: int, hva: int, size: int) -> None:
        mapping = find_mapping(pid, hva, size)
        path = f"/proc/{pid}/map_files/{mapping.start:x}-{mapping.end:x}"
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise SlotMemoryError(f"cannot open {path} ({mapping.path}): {err.strerror}",
                                  "run as root (map_files needs CAP_SYS_ADMIN)") from None
        try:
            self.map = mmap.mmap(descriptor, size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE,
                                 offset=mapping.offset + hva - mapping.start)
        finally:
            os.close(descriptor)
        self.size = size
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))

    def close(self) -> None:
        """Unmap (QEMU's own mapping is untouched)."""
        self.map.close()

    def read_flushed(self) -> bytes:
        """The slot's content as DRAM holds it: caches invalidated first."""
        flush_range(self.address, self.size)
        return self.map[:]

    def write_flushed(self, data: bytes) -> None:
        """Store ``data`` and write it back to DRAM, where a non-snooping device reads."""
        if len(data) != self.size:
            raise SlotMemoryError(f"{len(data)} bytes for a slot of {self.size}",
                                  "the source and destination slots differ in size")
        self.map[:] = data
        flush_range(self.address, self.size)


@dataclass(frozen=True)
class Transfer:
    """What one flushed read or write moved, and how fast."""

    size: int
    sha256: str
    seconds: float

    @property
    def gbps(self) -> float:
        """Throughput of the copy itself (checksum excluded), GB/s."""
        return self.size / self.seconds / 1e9 if self.seconds > 0 else 0.0


def capture(pid: int, hva: int, size: int) -> tuple[bytes, Transfer]:
    """Read a slot of QEMU ``pid`` with cache flushes; its bytes and the transfer."""
    memory = SlotMemory(pid, hva, size)
    try:
        began = time.perf_counter()
        data = memory.read_flushed()
        seconds = time.perf_counter() - began
    finally:
        memory.close()
    return data, Transfer(size, hashlib.sha256(data).hexdigest(), seconds)


def restore(pid: int, hva: int, data: bytes) -> Transfer:
    """Write ``data`` into a slot of QEMU ``pid`` with cache flushes, then read it back
    (flushed again) for the checksum: what a device would now read."""
    memory = SlotMemory(pid, hva, len(data))
    try:
        began = time.perf_counter()
        memory.write_flushed(data)
        seconds = time.perf_counter() - began
        digest = hashlib.sha256(memory.read_flushed()).hexdigest()
    finally:
        memory.close()
    return Transfer(len(data), digest, seconds)
