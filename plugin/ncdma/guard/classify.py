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
from ncdma.model.slot import Action, Decision


def selected_owner(slot: Memslot, layout: Layout, bars: Collection[str]) -> str | None:
    """The virtio-gpu BAR memory selected by ``bars`` that holds the slot, described; or None.

    vram is recognised by host address where QEMU reports one (>= 8.0): a slot can cover
    only part of the BAR (a BAR straddling the end of RAM). Otherwise, and for hostmem
    (blob mappings come and go inside the window), by the BAR's guest-physical window.
    """
    if "vram" in bars:
        for gpu in layout.gpus:
            if gpu.vram is not None and gpu.vram.holds(slot.hva, slot.size):
                return f"{gpu.qdev_id or gpu.qom_path} vram ({gpu.vram.name})"
    found = layout.gpu_bar_at(slot.gpa, slot.size)
    if found is None:
        return None
    gpu, bar = found
    if bar.kind not in bars:
        return None
    if bar.kind == "vram" and gpu.vram is not None and gpu.vram.hva is not None:
        return None  # the vram window, but not the vram's memory: something else is there
    return f"{gpu.qdev_id or gpu.qom_path} BAR {bar.bar} ({bar.kind})"


def classify(slot: Memslot, layout: Layout | None, bars: Collection[str],
             tagged: Mapping[int, tuple[int, int, int]]) -> Decision:
    """Decide for ``slot`` given the layout known now, the policy's ``bars`` and the tagged
    slots (slot id -> guest address, size, host address)."""
    if slot.deletes:
        return Decision(Action.DELETE, "slot deleted")
    if tagged.get(slot.slot) == (slot.gpa, slot.size, slot.hva):
        return Decision(Action.KEEP, "re-issue of a tagged slot keeps the flag")
    if layout is None:
        return Decision(Action.UNTOUCHED, "VM layout not known yet (QMP not ready)")
    if layout.overlaps_system_ram(slot.gpa, slot.size, slot.hva):
        return Decision(Action.UNTOUCHED, "guest system RAM is never tagged", "system RAM")
    owner = selected_owner(slot, layout, bars)
    if owner is None:
        return Decision(Action.UNTOUCHED, "not virtio-gpu BAR memory selected by the policy")
    return Decision(Action.TAG, "virtio-gpu BAR memory selected by the policy", owner)
