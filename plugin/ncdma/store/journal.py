"""The guard's journal: every live slot's record, counts, latency and recent events.

Bounded: one record per live slot id (KVM caps the ids) and the last EVENTS_KEPT events.
Two files in the domain's state directory:

- ``intent``: the one change being made, numbered, written and fsynced *before* the guard
  answers the ioctl (:meth:`Journal.write_ahead`): a guard killed at any moment leaves a
  successor the truth, since QEMU makes one memslot call at a time. A fixed-size record
  rewritten in place: small and cheap (no page to allocate after the first).
- ``slots.json``: the whole table, written atomically after the answer, for `ncdma status`
  and as the base a successor loads; the intent is applied over it when it is newer.

slots.json carries ``schema_version``. Version 1 (ncdma before the slot record) is read by
migrating it: its owner was text for people, so a migrated record keeps that text for
display only, with kind "other", and counts a selected slot as carried by QEMU's stream
(the safe side: `skip` refuses it). A newer version is refused with one line.
"""

from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ncdma.errors import StateFileError
from ncdma.kvm.memslot import Memslot
from ncdma.model.slot import Classification, SlotDecision, SlotOwner, SlotRecord
from ncdma.store.files import read_json_object, write_json
from ncdma.store.patreport import GuestPat
from ncdma.store.state import INTENT_FILE, SLOTS_FILE

EVENTS_KEPT = 256
JOURNAL_SCHEMA_VERSION = 2
_INTENT_SIZE = 1024  # bytes: one record as JSON, padded with spaces


@dataclass(frozen=True)
class SavedJournal:
    """A journal as saved: the guard's mode and flag, QEMU's pid, and the live slots."""

    mode: str
    flag: int
    qemu_pid: int
    capture_at_exit: bool
    counts: dict[str, int]
    latency_us: dict[str, int]
    slots: tuple[SlotRecord, ...]
    events: tuple[dict[str, Any], ...] = ()
    sequence: int = 0  # changes made since the guard started (the intent's numbering)
    guest_pat: GuestPat | None = None  # method vm: the VM-level state, once known

    def selected(self) -> tuple[SlotRecord, ...]:
        """The slots the guard selected (:attr:`SlotRecord.selected`)."""
        return tuple(record for record in self.slots if record.selected)

    def to_json(self) -> dict[str, Any]:
        """The document written to slots.json (and shown by `ncdma status --json`)."""
        return {"schema_version": JOURNAL_SCHEMA_VERSION, "mode": self.mode, "flag": self.flag,
                "qemu_pid": self.qemu_pid, "capture_at_exit": self.capture_at_exit,
                "sequence": self.sequence, "counts": self.counts, "latency_us": self.latency_us,
                "slots": [record.to_json() for record in self.slots],
                "events": list(self.events),
                "guest_pat": self.guest_pat.to_json() if self.guest_pat else None}


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
    def flagged(self) -> dict[int, tuple[int, int, int]]:
        """The live slots that carry the flag: slot id -> (guest address, size, host address)."""
        return {slot: (record.gpa, record.size, record.hva)
                for slot, record in self.slots.items() if record.flag_set}

    def _next(self, request: Memslot, classification: Classification,
              flag_set: bool) -> SlotRecord | None:
        """The slot's record after ``request`` (None: deleted)."""
        if classification.decision is SlotDecision.DELETE:
            return None
        # a re-issue whose owner the classifier does not say keeps what was known
        previous = self.slots.get(request.slot)
        inherit = previous if classification.owner == SlotOwner() else None
        owner = inherit.owner if inherit else classification.owner
        carried = inherit.in_qemu_stream if inherit else owner.in_qemu_stream
        return SlotRecord.of(request, classification, owner, flag_set, carried)

    def write_ahead(self, request: Memslot, classification: Classification,
                    flag_set: bool) -> None:
        """Write the change ``request`` makes to the table, fsynced, before it is answered.

        :raise OSError: When it cannot be written (the caller must then not tag).
        """
        if self.intent is None:
            self.intent = os.open(self.path.with_name(INTENT_FILE),
                                  os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        record = self._next(request, classification, flag_set)
        document = {"schema_version": JOURNAL_SCHEMA_VERSION, "sequence": self.sequence + 1,
                    "slot": request.slot, "record": record.to_json() if record else None}
        payload = json.dumps(document).encode().ljust(_INTENT_SIZE)
        if os.pwrite(self.intent, payload, 0) != len(payload):
            raise OSError(f"short write of {INTENT_FILE}")
        os.fdatasync(self.intent)

    def record(self, request: Memslot, classification: Classification, flag_set: bool) -> None:
        """Account for one request in the table (after :meth:`write_ahead`)."""
        decision = classification.decision
        self.sequence += 1
        self.counts[decision.value] += 1
        record = self._next(request, classification, flag_set)
        if record is None:
            self.slots.pop(request.slot, None)
        else:
            self.slots[request.slot] = record
        self.events.append({"slot": request.slot, "gpa": request.gpa, "size": request.size,
                            "decision": decision.value, "flag_set": flag_set})

    def snapshot(self) -> SavedJournal:
        """The journal as it is now."""
        return SavedJournal(self.mode, self.flag, self.qemu_pid, self.capture_at_exit,
                            dict(self.counts), self.latency_us,
                            tuple(record for _, record in sorted(self.slots.items())),
                            tuple(self.events), self.sequence, self.guest_pat)

    def save(self) -> None:
        """Write slots.json atomically.

        :raise OSError: When it cannot (the previous one stays; the intent is newer).
        """
        write_json(self.path, self.snapshot().to_json())

    def load(self) -> None:
        """Rebuild the table from slots.json and the newer intent, if any (a guard taking
        over from a dead one).

        :raise StateFileError: When slots.json or the intent is of a newer schema.
        """
        saved = _parse(self.path)
        if saved is not None:
            self.slots = {record.slot: record for record in saved.slots}
            self.counts.update(saved.counts)
            self.sequence = saved.sequence
            self.guest_pat = saved.guest_pat
        intent = read_json_object(self.path.with_name(INTENT_FILE))
        if intent is not None and intent["sequence"] > self.sequence:
            self.sequence = intent["sequence"]
            if intent["record"] is None:
                self.slots.pop(intent["slot"], None)
            else:
                parse = _record_parser(intent.get("schema_version", 1), str(self.path))
                self.slots[intent["slot"]] = parse(intent["record"])


def read_journal(directory: Path) -> SavedJournal | None:
    """The saved journal of a domain, or None when no guard wrote one (or it is unreadable).

    :raise StateFileError: When slots.json is of a newer schema than this ncdma reads.
    """
    return _parse(directory / SLOTS_FILE)


def journal_from_json(document: dict[str, Any], where: str) -> SavedJournal:
    """A journal document (schema 1 or 2) as a :class:`SavedJournal`.

    :raise StateFileError: When the schema is newer, or the document does not hold one.
    """
    version = document.get("schema_version", 1)
    parse = _record_parser(version, where)
    pat = document.get("guest_pat")
    try:
        return SavedJournal(str(document.get("mode", "")), int(document.get("flag", 0)),
                            int(document.get("qemu_pid", 0)),
                            bool(document.get("capture_at_exit")),
                            dict(document.get("counts", {})),
                            dict(document.get("latency_us", {})),
                            tuple(parse(record) for record in document.get("slots", [])),
                            tuple(document.get("events", [])), int(document.get("sequence", 0)),
                            GuestPat.from_json(pat) if isinstance(pat, dict) else None)
    except (KeyError, ValueError, TypeError) as err:
        raise StateFileError(f"{where} is not a journal of schema {version}: {err!r}",
                             "restart the domain's guard (virsh restart) to rewrite it") from None


def _record_parser(version: object, where: str) -> Callable[[dict[str, Any]], SlotRecord]:
    """How to read a slot record of journal schema ``version``.

    :raise StateFileError: When the schema is newer than this ncdma reads.
    """
    if version not in (1, 2):
        raise StateFileError(f"{where} is journal schema {version}; this ncdma reads 1 and 2",
                             "update ncdma on this host to the version that wrote it")
    return SlotRecord.from_json if version == 2 else _record_v1


def _parse(path: Path) -> SavedJournal | None:
    document = read_json_object(path)
    return None if document is None else journal_from_json(document, str(path))


def _record_v1(document: dict[str, Any]) -> SlotRecord:
    """A schema 1 record: owner text kept for people only; a selected slot counts as carried."""
    decision = SlotDecision(document["action"])
    return SlotRecord.from_json({**document, "decision": decision.value,
                                 "owner": SlotOwner(region=str(document["owner"])).to_json(),
                                 "in_qemu_stream": decision.wants_flag})
