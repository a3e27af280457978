"""The guard's journal: every live slot with its verdict and whether the flag was set.

Bounded: one record per live slot id (KVM caps the ids) and the last EVENTS_KEPT events.
Two files in the domain's state directory:

- ``intent``: the one change being made, numbered, written and fsynced *before* the guard
  answers the ioctl (:meth:`Journal.write_ahead`): a guard killed at any moment leaves a
  successor the truth, since QEMU makes one memslot call at a time. A fixed-size record
  rewritten in place: small and cheap (no page to allocate after the first).
- ``slots.json``: the whole table, written atomically after the answer, for `ncdma status`
  and as the base a successor loads; the intent is applied over it when it is newer.
"""

from __future__ import annotations

import collections
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ncdma.kvm.memslot import Memslot
from ncdma.model.slot import Action, Decision
from ncdma.store.files import read_json_object, write_json
from ncdma.store.patreport import GuestPat
from ncdma.store.state import INTENT_FILE, SLOTS_FILE

EVENTS_KEPT = 256
JOURNAL_SCHEMA_VERSION = 1
_INTENT_SIZE = 1024  # bytes: one record as JSON, padded with spaces


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
        self.sequence = 0
        self.intent: int | None = None
        self.guest_pat: GuestPat | None = None  # method vm: the VM-level state, once known

    @property
    def tagged(self) -> dict[int, tuple[int, int, int]]:
        """The live slots that carry the flag: slot id -> (guest address, size, host address)."""
        return {slot: (record.gpa, record.size, record.hva)
                for slot, record in self.slots.items() if record.flag_set}

    def _next(self, request: Memslot, decision: Decision, flag_set: bool) -> SlotRecord | None:
        """The slot's record after ``request`` (None: deleted)."""
        if decision.action is Action.DELETE:
            return None
        previous = self.slots.get(request.slot)
        owner = decision.owner or (previous.owner if previous else "")
        return SlotRecord(request.slot, request.gpa, request.size, request.hva, request.flags,
                          decision.action.value, decision.reason, owner, flag_set)

    def write_ahead(self, request: Memslot, decision: Decision, flag_set: bool) -> None:
        """Write the change ``request`` makes to the table, fsynced, before it is answered.

        :raise OSError: When it cannot be written (the caller must then not tag).
        """
        if self.intent is None:
            self.intent = os.open(self.path.with_name(INTENT_FILE),
                                  os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        record = self._next(request, decision, flag_set)
        document = {"sequence": self.sequence + 1, "slot": request.slot,
                    "record": asdict(record) if record else None}
        payload = json.dumps(document).encode().ljust(_INTENT_SIZE)
        if os.pwrite(self.intent, payload, 0) != len(payload):
            raise OSError(f"short write of {INTENT_FILE}")
        os.fdatasync(self.intent)

    def record(self, request: Memslot, decision: Decision, flag_set: bool) -> None:
        """Account for one request in the table (after :meth:`write_ahead`)."""
        self.sequence += 1
        self.counts[decision.action.value] += 1
        record = self._next(request, decision, flag_set)
        if record is None:
            self.slots.pop(request.slot, None)
        else:
            self.slots[request.slot] = record
        self.events.append({"slot": request.slot, "gpa": request.gpa, "size": request.size,
                            "action": decision.action.value, "flag_set": flag_set})

    def to_json(self) -> dict[str, Any]:
        """The document written to slots.json."""
        return {"schema_version": JOURNAL_SCHEMA_VERSION, "mode": self.mode, "flag": self.flag,
                "qemu_pid": self.qemu_pid, "capture_at_exit": self.capture_at_exit,
                "sequence": self.sequence, "counts": dict(self.counts), "latency_us": self.latency_us,
                "slots": [asdict(record) for _, record in sorted(self.slots.items())],
                "events": list(self.events),
                "guest_pat": self.guest_pat.to_json() if self.guest_pat else None}

    def save(self) -> None:
        """Write slots.json atomically.

        :raise OSError: When it cannot (the previous one stays; the intent is newer).
        """
        write_json(self.path, self.to_json())

    def load(self) -> None:
        """Rebuild the table from slots.json and the newer intent, if any (a guard taking
        over from a dead one)."""
        data = read_json_object(self.path) or {}
        self.slots = {record["slot"]: SlotRecord(**record) for record in data.get("slots", [])}
        self.counts.update(data.get("counts", {}))
        self.sequence = int(data.get("sequence", 0))
        if isinstance(data.get("guest_pat"), dict):
            self.guest_pat = GuestPat.from_json(data["guest_pat"])
        intent = read_json_object(self.path.with_name(INTENT_FILE))
        if intent is not None and intent["sequence"] > self.sequence:
            self.sequence = intent["sequence"]
            if intent["record"] is None:
                self.slots.pop(intent["slot"], None)
            else:
                self.slots[intent["slot"]] = SlotRecord(**intent["record"])


SELECTED_ACTIONS = frozenset({Action.TAG.value, Action.KEEP.value})


def is_selected(record: dict[str, Any]) -> bool:
    """True for a journaled slot the guard selected: tagged when created ("tag") or re-issued
    by QEMU with only its flags changed and the flag kept ("keep", enforce mode)."""
    return record.get("action") in SELECTED_ACTIONS


def read_journal(directory: Path) -> dict[str, Any] | None:
    """The saved journal of a domain, or None when no guard wrote one."""
    return read_json_object(directory / SLOTS_FILE)
