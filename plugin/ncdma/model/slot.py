"""One memslot as ncdma knows it: the request, the guard's decision, what owns its memory.

The guard builds a :class:`SlotRecord` for every request it answers; its journal stores
them, and `ncdma status`, the migration's preflight and capture and the destination's
peer read them back. Every decision reads these typed fields; only views turn them into
text for people (:meth:`SlotOwner.describe`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ncdma.kvm.memslot import Memslot


class SlotDecision(str, enum.Enum):
    """What the guard does with a memslot request."""

    TAG = "tag"            # newly selected: set the flag (enforce) or note it (audit)
    KEEP = "keep"          # re-issue of a flagged slot: the flag must stay set
    UNTOUCHED = "untouched"
    DELETE = "delete"      # size 0: the slot goes away; forget it

    @property
    def wants_flag(self) -> bool:
        """The flag belongs on this request."""
        return self in (SlotDecision.TAG, SlotDecision.KEEP)


class OwnerKind(str, enum.Enum):
    """What a slot's memory is."""

    VRAM = "vram"              # a virtio-gpu VGA device's vram BAR (a RAMBlock)
    HOSTMEM = "hostmem"        # a blob mapped into a virtio-gpu device's hostmem BAR
    SYSTEM_RAM = "system RAM"  # guest system RAM: never tagged
    ROM = "rom"
    OTHER = "other"            # anything else, or not known when the guard decided


# Memory that QEMU's own RAM migration stream carries: RAMBlocks. Blob mappings in the
# hostmem BAR are not RAMBlocks (FACTS.md), so QEMU never migrates them.
_IN_QEMU_STREAM = frozenset({OwnerKind.VRAM, OwnerKind.SYSTEM_RAM, OwnerKind.ROM})


@dataclass(frozen=True)
class SlotOwner:
    """What owns a slot's memory: its kind and, for a GPU BAR, the device and the BAR."""

    kind: OwnerKind = OwnerKind.OTHER
    device: str = ""          # the virtio-gpu device: its id (libvirt's alias) or QOM path
    bar: int | None = None    # the device's BAR number
    region: str = ""          # QEMU's name for the memory, e.g. a RAMBlock "…/vga.vram"

    @property
    def in_qemu_stream(self) -> bool:
        """QEMU's own RAM migration stream carries memory of this kind."""
        return self.kind in _IN_QEMU_STREAM

    def describe(self) -> str:
        """For people: ``video0 BAR 4 (hostmem)``, ``video0 vram (…/vga.vram)``, ``system RAM``."""
        if not self.device:
            return self.region or ("" if self.kind is OwnerKind.OTHER else self.kind.value)
        if self.region:
            return f"{self.device} {self.kind.value} ({self.region})"
        return f"{self.device} BAR {self.bar} ({self.kind.value})"

    def to_json(self) -> dict[str, Any]:
        """The owner as the journal stores it."""
        return {"kind": self.kind.value, "device": self.device, "bar": self.bar,
                "region": self.region}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SlotOwner:
        """The owner from :meth:`to_json`'s document.

        :raise ValueError: When the kind is unknown.
        :raise KeyError: When a field is missing.
        """
        bar = document["bar"]
        return cls(OwnerKind(document["kind"]), str(document["device"]),
                   None if bar is None else int(bar), str(document["region"]))


@dataclass(frozen=True)
class Classification:
    """The guard's decision for one request, why, and what owns the slot's memory."""

    decision: SlotDecision
    reason: str
    owner: SlotOwner = SlotOwner()


@dataclass(frozen=True)
class SlotRecord:
    """A live slot: the request that created (or last re-issued) it (slot id with the
    address space in the high 16 bits, flags, guest-physical start, size, host-virtual
    start in QEMU), the decision, the owner, whether the flag was set in it, and whether
    QEMU's RAM stream carries it."""

    slot: int
    flags: int
    gpa: int
    size: int
    hva: int
    decision: SlotDecision
    reason: str
    owner: SlotOwner
    flag_set: bool
    in_qemu_stream: bool

    @classmethod
    def of(cls, request: Memslot, classification: Classification, owner: SlotOwner,
           flag_set: bool, in_qemu_stream: bool) -> SlotRecord:
        """The record of ``request`` as the guard classified it."""
        return cls(request.slot, request.flags, request.gpa, request.size, request.hva,
                   classification.decision, classification.reason, owner, flag_set,
                   in_qemu_stream)

    @property
    def selected(self) -> bool:
        """The guard selected this slot: tagged when created (TAG), or re-issued by QEMU with
        only its flags changed and the flag kept (KEEP, enforce mode)."""
        return self.decision.wants_flag

    def to_json(self) -> dict[str, Any]:
        """The record as the journal stores it (schema 2)."""
        return {"slot": self.slot, "gpa": self.gpa, "size": self.size, "hva": self.hva,
                "flags": self.flags, "decision": self.decision.value, "reason": self.reason,
                "owner": self.owner.to_json(), "flag_set": self.flag_set,
                "in_qemu_stream": self.in_qemu_stream}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SlotRecord:
        """The record from :meth:`to_json`'s document.

        :raise ValueError: When a value is out of its range.
        :raise KeyError: When a field is missing.
        """
        return cls(int(document["slot"]), int(document["flags"]), int(document["gpa"]),
                   int(document["size"]), int(document["hva"]),
                   SlotDecision(document["decision"]), str(document["reason"]),
                   SlotOwner.from_json(document["owner"]), bool(document["flag_set"]),
                   bool(document["in_qemu_stream"]))
