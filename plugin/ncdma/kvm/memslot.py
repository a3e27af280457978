"""A KVM memslot as QEMU asks for it: read from, and flag written into, QEMU's memory.

The guard reads the ioctl's ``struct kvm_userspace_memory_region[2]`` through
/proc/PID/mem while QEMU's thread waits in the trapped ioctl, and writes only the
``flags`` word back; the kernel reads the struct after the guard answers CONTINUE.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from ncdma.kvm import abi
from ncdma.linux.procfs import thread_syscalls
from ncdma.linux.syscalls import NR_IOCTL

_V1_SIZE = ctypes.sizeof(abi.UserspaceMemoryRegion)
_FLAGS_OFFSET = abi.UserspaceMemoryRegion.flags.offset
_V2_FIELDS_SIZE = abi.UserspaceMemoryRegion2.guest_memfd.offset + 4  # what the guard reads


@dataclass(frozen=True)
class Memslot:
    """One memslot request: slot id (with address-space bits), flags, GPA, size, HVA."""

    slot: int
    flags: int
    gpa: int
    size: int
    hva: int
    v2: bool = False

    @property
    def deletes(self) -> bool:
        """A size of 0 deletes the slot."""
        return self.size == 0

    def describe(self) -> str:
        """slot, GPA range and size in hex, for logs."""
        return (f"slot {self.slot:#x} gpa {self.gpa:#x}-{self.gpa + self.size:#x} size {self.size:#x} "
                f"hva {self.hva:#x} flags {self.flags:#x}")


def parse_region(data: bytes, v2: bool) -> Memslot:
    """The memslot in the bytes of a v1 or v2 region struct."""
    region = abi.UserspaceMemoryRegion.from_buffer_copy(data[:_V1_SIZE])
    return Memslot(region.slot, region.flags, region.guest_phys_addr, region.memory_size,
                   region.userspace_addr, v2)


class ProcessMemory:
    """Read and write another process's memory through /proc/PID/mem (needs ptrace rights)."""

    def __init__(self, pid: int) -> None:
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    def read_region(self, address: int, v2: bool) -> Memslot:
        """The region struct at ``address`` in the process."""
        size = _V2_FIELDS_SIZE if v2 else _V1_SIZE
        data = os.pread(self.fd, size, address)
        if len(data) < _V1_SIZE:
            raise OSError(f"short read of the region struct at {address:#x}")
        return parse_region(data, v2)

    def write_flags(self, address: int, flags: int) -> None:
        """Overwrite the ``flags`` word of the region struct at ``address``."""
        written = os.pwrite(self.fd, flags.to_bytes(4, "little"), address + _FLAGS_OFFSET)
        if written != 4:
            raise OSError(f"short write of the flags at {address + _FLAGS_OFFSET:#x}")


def blocked_memslot_ioctl(pid: int) -> tuple[int, int, bool] | None:
    """A thread of ``pid`` waiting in a memslot ioctl: (thread id, struct address, v2).

    Read from /proc/PID/task/TID/syscall ("16 0xFD 0x4020ae46 0xADDRESS ..."): how a new
    guard finds the argument of a notification its predecessor received but never recorded.
    """
    requests = {abi.KVM_SET_USER_MEMORY_REGION: False, abi.KVM_SET_USER_MEMORY_REGION2: True}
    for tid, fields in thread_syscalls(pid):
        if len(fields) > 3 and fields[0] == str(NR_IOCTL) and int(fields[2], 16) in requests:
            return tid, int(fields[3], 16), requests[int(fields[2], 16)]
    return None
