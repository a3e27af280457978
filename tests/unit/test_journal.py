"""The guard's journal: live slots, bounded events, persistence, and status's cross-check."""

from __future__ import annotations

from ncdma.kvm.memslot import Memslot
from ncdma.model.slot import Action, Decision
from ncdma.store.journal import EVENTS_KEPT, Journal, read_journal
from ncdma.store.status import cross_check

TAG = Decision(Action.TAG, "selected", "video0 vram")
KEEP = Decision(Action.KEEP, "re-issue")
DELETE = Decision(Action.DELETE, "deleted")


def test_tagged_slots_stay_tagged_until_deleted(tmp_path) -> None:
    journal = Journal(tmp_path, "enforce", 8)
    journal.record(Memslot(3, 1, 0xFC000000, 0x800000, 0x7F00), TAG, True)
    journal.record(Memslot(3, 0, 0xFC000000, 0x800000, 0x7F00), KEEP, True)
    assert journal.tagged == {3: (0xFC000000, 0x800000, 0x7F00)}
    assert journal.slots[3].owner == "video0 vram"
    journal.record(Memslot(3, 0, 0xFC000000, 0, 0x7F00), DELETE, False)
    assert journal.tagged == {} and 3 not in journal.slots


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
    assert successor.tagged == {5: (0xFC000000, 0x800000, 0x7F00)}
    assert successor.counts["tag"] == 1
    assert read_journal(tmp_path)["slots"][0]["gpa"] == 0xFC000000


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
    assert successor.tagged == {}
    successor.write_ahead(vram, TAG, True)  # and the other way round: a tag not yet saved
    again = Journal(tmp_path, "enforce", 8)
    again.load()
    assert again.tagged == {5: (0xFC000000, 0x800000, 0x7F00)}


def test_cross_check_names_slots_missing_from_the_flat_view() -> None:
    journal = {"slots": [{"slot": 1, "gpa": 0, "size": 0xA0000},
                         {"slot": 2, "gpa": 0xFC000000, "size": 0x800000}]}
    flat = [{"start": 0, "size": 0xA0000, "name": "pc.ram", "kvm": True},
            {"start": 0xFC000000, "size": 0x800000, "name": "vga.vram", "kvm": False}]
    assert cross_check(journal, flat) == ("slot 0x2 0xfc000000-0xfc800000 is not in QEMU's "
                                          "flat view",)
    flat[1]["kvm"] = True
    assert cross_check(journal, flat) == ()
    assert cross_check(journal, None) == ()


def test_cross_check_leaves_smm_slots_alone() -> None:
    # address space 1 (SMM) maps RAM under the VGA window, which "memory" does not show
    journal = {"slots": [{"slot": 0x10000, "gpa": 0, "size": 0xC0000}]}
    flat = [{"start": 0, "size": 0xA0000, "name": "pc.ram", "kvm": True}]
    assert cross_check(journal, flat) == ()
