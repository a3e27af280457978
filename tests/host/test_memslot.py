"""Reading a region struct from, and writing only its flags into, a process's real memory."""

from __future__ import annotations

import ctypes
import os

from ncdma.kvm import abi
from ncdma.kvm.memslot import ProcessMemory


def test_only_the_flags_word_changes() -> None:
    region = abi.UserspaceMemoryRegion2(7, 0x1, 0xFC000000, 0x800000, 0x7F0000000000)
    region.guest_memfd_offset = 0x1234
    before = bytes(region)
    memory = ProcessMemory(os.getpid())  # /proc/self/mem: the same path the guard uses
    try:
        address = ctypes.addressof(region)
        slot = memory.read_region(address, v2=True)
        assert (slot.slot, slot.flags, slot.gpa, slot.size, slot.hva) == \
            (7, 0x1, 0xFC000000, 0x800000, 0x7F0000000000)
        memory.write_flags(address, slot.flags | 0x8)
    finally:
        os.close(memory.fd)
    after = bytes(region)
    assert region.flags == 0x9
    changed = [index for index, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed == [abi.UserspaceMemoryRegion2.flags.offset], "exactly one byte of flags"
