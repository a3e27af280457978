"""The guard's journal: live slot records, bounded events, persistence and its schema,
and status's cross-check."""

from __future__ import annotations

import json

import pytest

from ncdma.errors import StateFileError
from ncdma.kvm.memslot import Memslot
from ncdma.model.slot import (Classification, OwnerKind, SlotDecision, SlotOwner,
                              SlotRecord)
from ncdma.store.journal import EVENTS_KEPT, Journal, SavedJournal, read_journal
from ncdma.store.state import SLOTS_FILE
from ncdma.store.status import cross_check

VRAM = SlotOwner(OwnerKind.VRAM, "video0", 0, "0000:00:02.0/vga.vram")
TAG = Classification(SlotDecision.TAG, "selected", VRAM)
KEEP = Classification(SlotDecision.KEEP, "re-issue")
DELETE = Classification(SlotDecision.DELETE, "deleted")


def test_tagged_slots_stay_tagged_until_deleted(tmp_path) -> None:
    journal = Journal(tmp_path, "enforce", 8)
    journal.record(Memslot(3, 1, 0xFC000000, 0x800000, 0x7F00), TAG, True)
    journal.record(Memslot(3, 0, 0xFC000000, 0x800000, 0x7F00), KEEP, True)
    record = journal.slots[3]
    assert journal.flagged == {3: (0xFC000000, 0x800000, 0x7F00)}
    assert record.owner == VRAM and record.in_qemu_stream
    assert record.decision is SlotDecision.KEEP and record.flags == 0
    journal.record(Memslot(3, 0, 0xFC000000, 0, 0x7F00), DELETE, False)
    assert journal.flagged == {} and 3 not in journal.slots


def test_events_are_bounded(tmp_path) -> None:
    journal = Journal(tmp_path, "audit", 8)
    for index in range(EVENTS_KEPT * 3):
        journal.record(Memslot(1, 0, 0, 4096 if index % 2 else 0, 0),
                       DELETE if index % 2 == 0 else TAG, False)
    assert len(journal.events) == EVENTS_KEPT and len(journal.slots) <= 1


def test_a_successor_rebuilds_the_table(tmp_path) -> None:
    journal = Journal(tmp_path, "enforce", 8)
    journal.record(Memslot(5, 1, 0xFC000000, 0x800000, 0x7F00), TAG, True)
    journal.save()
    successor = Journal(tmp_path, "enforce", 8)
    successor.load()
    assert successor.flagged == {5: (0xFC000000, 0x800000, 0x7F00)}
    assert successor.counts["tag"] == 1
    saved = read_journal(tmp_path)
    assert saved is not None and saved.slots == (journal.slots[5],)
    assert json.loads((tmp_path / SLOTS_FILE).read_text())["schema_version"] == 2


def test_a_successor_applies_the_change_written_ahead_of_the_last_answer(tmp_path) -> None:
    journal = Journal(tmp_path, "enforce", 8)
    vram = Memslot(5, 1, 0xFC000000, 0x800000, 0x7F00)
    journal.write_ahead(vram, TAG, True)
    journal.record(vram, TAG, True)
    journal.save()
    deleted = Memslot(5, 0, 0xFC000000, 0, 0x7F00)
    journal.write_ahead(deleted, DELETE, False)  # killed here: answered or not, never saved
    successor = Journal(tmp_path, "enforce", 8)
    successor.load()
    assert successor.flagged == {}
    successor.write_ahead(vram, TAG, True)  # and the other way round: a tag not yet saved
    again = Journal(tmp_path, "enforce", 8)
    again.load()
    assert again.flagged == {5: (0xFC000000, 0x800000, 0x7F00)}
    assert again.slots[5].owner == VRAM and again.slots[5].in_qemu_stream


def test_an_intent_of_the_previous_schema_is_applied(tmp_path) -> None:
    """A guard of the previous version wrote the intent; this version's successor reads it."""
    Journal(tmp_path, "enforce", 8).save()
    (tmp_path / "intent").write_text(json.dumps({
        "sequence": 1, "slot": 5, "record": {**V1["slots"][0], "slot": 5}}))
    successor = Journal(tmp_path, "enforce", 8)
    successor.load()
    assert successor.flagged == {5: (0xFC000000, 0x800000, 0x7F00)}


def test_the_journal_gets_its_mode_whatever_the_umask(tmp_path) -> None:
    import os

    from ncdma.store.files import PRIVATE

    old = os.umask(0)
    try:
        Journal(tmp_path, "audit", 8).save()
    finally:
        os.umask(old)
    assert (tmp_path / SLOTS_FILE).stat().st_mode & 0o777 == PRIVATE


V1 = {"schema_version": 1, "mode": "enforce", "flag": 8, "qemu_pid": 42,
      "capture_at_exit": True, "counts": {"tag": 1}, "latency_us": {},
      "slots": [{"slot": 3, "gpa": 0xFC000000, "size": 0x800000, "hva": 0x7F00, "flags": 9,
                 "action": "tag", "reason": "selected", "owner": "video0 BAR 4 (hostmem)",
                 "flag_set": True},
                {"slot": 0, "gpa": 0, "size": 0xA0000, "hva": 0x7000, "flags": 0,
                 "action": "untouched", "reason": "RAM", "owner": "system RAM",
                 "flag_set": False}],
      "events": []}


def test_a_schema_1_journal_is_migrated_on_the_safe_side(tmp_path) -> None:
    (tmp_path / SLOTS_FILE).write_text(json.dumps(V1))
    saved = read_journal(tmp_path)
    assert saved is not None and saved.qemu_pid == 42 and saved.capture_at_exit
    selected, untouched = saved.slots
    assert saved.selected() == (selected,)
    assert selected.decision is SlotDecision.TAG and selected.flag_set
    # the old owner was text for people: kept for display, never decided on
    assert selected.owner.kind is OwnerKind.OTHER
    assert selected.owner.describe() == "video0 BAR 4 (hostmem)"
    assert selected.in_qemu_stream, "unknown memory counts as carried: skip refuses it"
    assert not untouched.in_qemu_stream


def test_a_newer_journal_is_refused_in_one_line(tmp_path) -> None:
    (tmp_path / SLOTS_FILE).write_text(json.dumps({**V1, "schema_version": 3}))
    with pytest.raises(StateFileError, match="journal schema 3") as caught:
        read_journal(tmp_path)
    assert "\n" not in str(caught.value)


def test_a_record_survives_its_json() -> None:
    record = SlotRecord(0x10003, 9, 0xF8000000, 0x200000, 0x7E00, SlotDecision.TAG,
                        "selected", SlotOwner(OwnerKind.HOSTMEM, "video0", 4), True, False)
    assert SlotRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


def _journal(*records: tuple[int, int, int]) -> SavedJournal:
    return SavedJournal("audit", 8, 1, False, {}, {}, tuple(
        SlotRecord(slot, 0, gpa, size, 0, SlotDecision.UNTOUCHED, "", SlotOwner(),
                   False, False) for slot, gpa, size in records))


def test_cross_check_names_slots_missing_from_the_flat_view() -> None:
    journal = _journal((1, 0, 0xA0000), (2, 0xFC000000, 0x800000))
    flat = [{"start": 0, "size": 0xA0000, "name": "pc.ram", "kvm": True},
            {"start": 0xFC000000, "size": 0x800000, "name": "vga.vram", "kvm": False}]
    assert cross_check(journal, flat) == ("slot 0x2 0xfc000000-0xfc800000 is not in QEMU's "
                                          "flat view",)
    flat[1]["kvm"] = True
    assert cross_check(journal, flat) == ()
    assert cross_check(journal, None) == ()


def test_cross_check_leaves_smm_slots_alone() -> None:
    # address space 1 (SMM) maps RAM under the VGA window, which "memory" does not show
    journal = _journal((0x10000, 0, 0xC0000))
    flat = [{"start": 0, "size": 0xA0000, "name": "pc.ram", "kvm": True}]
    assert cross_check(journal, flat) == ()
