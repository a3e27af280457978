"""QEMU's `kvm_set_user_memory` trace: one event per memslot ioctl QEMU made.

Run QEMU with `-trace kvm_set_user_memory -D LOGFILE`. QEMU 7.2 writes
`kvm_set_user_memory Slot#6 flags=0x1 gpa=0xe0000000 size=0x800000 ua=0x7f... ret=0`;
QEMU 10.0 adds `AddrSpace#0` before the slot and guest_memfd fields before `ret`.
A deletion is the same slot with size 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EVENT = re.compile(r"kvm_set_user_memory .*?Slot#(\d+) flags=(0x[0-9a-f]+) gpa=(0x[0-9a-f]+) "
                    r"size=(0x[0-9a-f]+) .*?ret=(-?\d+)")


@dataclass(frozen=True)
class MemslotEvent:
    slot: int
    flags: int
    gpa: int
    size: int
    ret: int

    @property
    def deletes(self) -> bool:
        return self.size == 0


def memslot_events(log: str) -> list[MemslotEvent]:
    """The kvm_set_user_memory events in a QEMU trace log, in order (other lines are ignored)."""
    return [MemslotEvent(int(slot), int(flags, 16), int(gpa, 16), int(size, 16), int(ret))
            for slot, flags, gpa, size, ret in _EVENT.findall(log)]
