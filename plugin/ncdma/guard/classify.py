"""The guard's decision for one memslot request. Pure: no syscalls, clock or logging.

Contract (DESIGN.md section 3): a slot is tagged only if its memory is virtio-gpu
device-BAR memory selected by the policy; a slot whose memory overlaps guest system RAM is
never tagged, whatever the guest does with its BARs; a tagged slot keeps the flag on every
re-issue (the kernel rejects a change of that bit) and is forgotten when deleted. A re-issue
is the same slot id at the same guest address, size and host address: a slot id that comes
back with other memory (a delete the table missed) is classified afresh, never given the
flag for what it held before. On any doubt the slot is left untouched, and the reason says
why.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ncdma.kvm.memslot import Memslot
from ncdma.model.layout import Layout
from ncdma.model.slot import Classification, OwnerKind, SlotDecision, SlotOwner


_NOT_SELECTED = "not virtio-gpu BAR memory selected by the policy"
_UNKNOWN = SlotOwner()


def _untouched(reason: str, owner: SlotOwner = _UNKNOWN) -> Classification:
    return Classification(SlotDecision.UNTOUCHED, reason, owner)


def _selected(slot: Memslot, layout: Layout, bars: Collection[str]) -> Classification:
    """TAG with the owner when the slot's host memory is memory the policy selects, else
    UNTOUCHED with the reason.

    By host address only: vram when the slot lies inside a GPU's vram RAMBlock (QEMU >= 8.0
    reports its host address; older QEMU once the guard has learned it from the flat view);
    hostmem when the slot lies in a GPU's hostmem window and its host memory is none of the
    VM's other RAMBlocks (an option ROM, RAM or another device's BAR moved there by the
    guest). A BAR's guest-physical window alone proves nothing: the guest moves BARs.
    """
    if "vram" in bars:
        for gpu in layout.gpus:
            if gpu.vram is not None and gpu.vram.holds(slot.hva, slot.size):
                vram_bar = next((bar.bar for bar in gpu.bars if bar.kind == "vram"), None)
                return Classification(SlotDecision.TAG, "virtio-gpu vram selected by the policy",
                                      SlotOwner(OwnerKind.VRAM, gpu.qdev_id or gpu.qom_path,
                                                vram_bar, gpu.vram.name))
    found = layout.gpu_bar_at(slot.gpa, slot.size)
    if found is None or found[1].kind not in bars:
        return _untouched(_NOT_SELECTED)
    gpu, bar = found
    if bar.kind == "vram":
        return _untouched("in the vram BAR's window, but not vram's host memory" if
                          gpu.vram is not None and gpu.vram.hva is not None else
                          "in the vram BAR's window, but vram's host address is not known yet "
                          "(QEMU < 8.0: learned from the flat view once a vram slot exists)")
    if not layout.host_addresses:
        return _untouched("QEMU < 8.0 reports no host addresses: hostmem memory cannot be told "
                          "from other memory")
    other = layout.ramblock_meeting(slot.hva, slot.size)
    if other is not None:
        return _untouched(f"in the {bar.kind} BAR's window, but its memory is RAMBlock "
                          f"{other.name}", SlotOwner(region=other.name))
    return Classification(SlotDecision.TAG, "virtio-gpu hostmem mapping selected by the policy",
                          SlotOwner(OwnerKind.HOSTMEM, gpu.qdev_id or gpu.qom_path, bar.bar))


def classify(slot: Memslot, layout: Layout | None, bars: Collection[str],
             flagged: Mapping[int, tuple[int, int, int]]) -> Classification:
    """Decide for ``slot`` given the layout known now, the policy's ``bars`` and the live
    slots that carry the flag (slot id -> guest address, size, host address)."""
    if slot.deletes:
        return Classification(SlotDecision.DELETE, "slot deleted")
    if flagged.get(slot.slot) == (slot.gpa, slot.size, slot.hva):
        return Classification(SlotDecision.KEEP, "re-issue of a tagged slot keeps the flag")
    if layout is None:
        return _untouched("VM layout not known yet (QMP not ready)")
    if layout.overlaps_system_ram(slot.gpa, slot.size, slot.hva):
        return _untouched("guest system RAM is never tagged", SlotOwner(OwnerKind.SYSTEM_RAM))
    return _selected(slot, layout, bars)
