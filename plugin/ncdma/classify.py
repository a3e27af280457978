"""The guard's decision for one memslot request. Pure: no syscalls, clock or logging.

Contract (DESIGN.md section 3): a slot is tagged only if its memory is virtio-gpu
device-BAR memory selected by the policy; a slot whose memory overlaps guest system RAM is
never tagged, whatever the guest does with its BARs; a tagged slot keeps the flag on every
re-issue (the kernel rejects a change of that bit) and is forgotten when deleted. On any
doubt the slot is left untouched, and the reason says why.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from ncdma.memslot import Memslot


class Action(str, enum.Enum):
    """What the guard does with the ioctl."""

    TAG = "tag"            # newly selected: set the flag (enforce) or note it (audit)
    KEEP = "keep"          # re-issue of a tagged slot: the flag must stay set
    UNTOUCHED = "untouched"
    DELETE = "delete"      # size 0: the slot goes away; forget it


@dataclass(frozen=True)
class Decision:
    """The action, why, and what owns the slot's memory (for the journal)."""

    action: Action
    reason: str
    owner: str = ""

    @property
    def wants_flag(self) -> bool:
        """The flag belongs on this request."""
        return self.action in (Action.TAG, Action.KEEP)


class SlotLayout(Protocol):
    """What the classifier needs to know about a VM's memory (see :mod:`ncdma.layout`)."""

    def overlaps_system_ram(self, gpa: int, size: int, hva: int) -> bool:
        """The range overlaps guest system RAM by guest-physical or host address."""

    def selected_bar(self, gpa: int, size: int, hva: int, bars: Collection[str]) -> str | None:
        """A description of the virtio-gpu BAR selected by ``bars`` that holds the slot."""


def classify(slot: Memslot, layout: SlotLayout | None, bars: Collection[str],
             tagged: Collection[int]) -> Decision:
    """Decide for ``slot`` given the layout known now, the policy's ``bars``, tagged slot ids."""
    if slot.deletes:
        return Decision(Action.DELETE, "slot deleted")
    if slot.slot in tagged:
        return Decision(Action.KEEP, "re-issue of a tagged slot keeps the flag")
    if layout is None:
        return Decision(Action.UNTOUCHED, "VM layout not known yet (QMP not ready)")
    if layout.overlaps_system_ram(slot.gpa, slot.size, slot.hva):
        return Decision(Action.UNTOUCHED, "guest system RAM is never tagged", "system RAM")
    owner = layout.selected_bar(slot.gpa, slot.size, slot.hva, bars)
    if owner is None:
        return Decision(Action.UNTOUCHED, "not virtio-gpu BAR memory selected by the policy")
    return Decision(Action.TAG, "virtio-gpu BAR memory selected by the policy", owner)
