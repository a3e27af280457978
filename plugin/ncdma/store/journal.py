"""The guard's journal: every live slot with its verdict and whether the flag was set.

Bounded: one record per live slot id (KVM caps the ids) and the last EVENTS_KEPT events.
Persisted after every change as ``slots.json`` in the domain's state directory, written
atomically, so that `ncdma status` can read it and a new guard can rebuild its table.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ncdma.kvm.memslot import Memslot
from ncdma.model.slot import Action, Decision
from ncdma.store.files import read_json_object, write_json
from ncdma.store.state import SLOTS_FILE

EVENTS_KEPT = 256
JOURNAL_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SlotRecord:
    """A live slot: the request that created (or last re-issued) it and the guard's verdict."""

    slot: int
    gpa: int
    size: int
    hva: int
    flags: int
    action: str
    reason: str
    owner: str
    flag_set: bool


class Journal:
    """The live slot table and recent events of one domain."""

    def __init__(self, directory: Path, mode: str, flag: int, qemu_pid: int = 0,
                 capture_at_exit: bool = False) -> None:
        self.path = directory / SLOTS_FILE
        self.mode = mode
        self.flag = flag
        self.qemu_pid = qemu_pid
        self.capture_at_exit = capture_at_exit
        self.slots: dict[int, SlotRecord] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self.counts: collections.Counter[str] = collections.Counter()
        self.latency_us: dict[str, int] = {}

    @property
    def tagged(self) -> frozenset[int]:
        """Ids of the live slots that carry the flag."""
        return frozenset(slot for slot, record in self.slots.items() if record.flag_set)

    def record(self, request: Memslot, decision: Decision, flag_set: bool) -> None:
        """Account for one answered request."""
        self.counts[decision.action.value] += 1
        if decision.action is Action.DELETE:
            self.slots.pop(request.slot, None)
        else:
            previous = self.slots.get(request.slot)
            owner = decision.owner or (previous.owner if previous else "")
            self.slots[request.slot] = SlotRecord(
                request.slot, request.gpa, request.size, request.hva, request.flags,
                decision.action.value, decision.reason, owner, flag_set)
        self.events.append({"slot": request.slot, "gpa": request.gpa, "size": request.size,
                            "action": decision.action.value, "flag_set": flag_set})

    def to_json(self) -> dict[str, Any]:
        """The document written to slots.json."""
        return {"schema_version": JOURNAL_SCHEMA_VERSION, "mode": self.mode, "flag": self.flag,
                "qemu_pid": self.qemu_pid, "capture_at_exit": self.capture_at_exit,
                "counts": dict(self.counts), "latency_us": self.latency_us,
                "slots": [asdict(record) for _, record in sorted(self.slots.items())],
                "events": list(self.events)}

    def save(self) -> None:
        """Write slots.json atomically."""
        write_json(self.path, self.to_json())

    def load(self) -> None:
        """Rebuild the table from slots.json (a guard taking over from a dead one)."""
        data = read_json_object(self.path)
        if data is None:
            return
        self.slots = {record["slot"]: SlotRecord(**record) for record in data.get("slots", [])}
        self.counts.update(data.get("counts", {}))


def read_journal(directory: Path) -> dict[str, Any] | None:
    """The saved journal of a domain, or None when no guard wrote one."""
    return read_json_object(directory / SLOTS_FILE)
