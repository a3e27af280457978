"""The pure migration decision: which strategy, or which refusal and what it says."""

from __future__ import annotations

import dataclasses

import pytest

from ncdma import __version__
from ncdma.migrate.options import MigrateOptions
from ncdma.migrate.preflight import (MigrationDecision, MigrationRefusal, SourceFacts, Strategy,
                                     decide_migration)
from ncdma.model.slot import OwnerKind, SlotDecision, SlotOwner, SlotRecord


def selected(slot: int, gpa: int, size: int, owner: SlotOwner, flag_set: bool) -> SlotRecord:
    return SlotRecord(slot, 0, gpa, size, 0x7F0000000000 + gpa, SlotDecision.TAG,
                      "selected", owner, flag_set, owner.in_qemu_stream)


VRAM = selected(2, 0xFC000000, 0x800000,
                SlotOwner(OwnerKind.VRAM, "video0", 0, "0000:00:02.0/vga.vram"), False)
BLOB = selected(9, 0x380000000000, 0x200000, SlotOwner(OwnerKind.HOSTMEM, "video0", 4), True)
OPTIONS = MigrateOptions("vm", "qemu+ssh://h2/system", live=True)
READY = {"ncdma": __version__, "hook_installed": True, "guard_service": True, "wrapper": True, "mode": "audit",
         "reasons": ["kernel rejects the flag"], "aux_ram_share": True, "qemu": "10.0.13"}


def source(migration: str | None = "copy", *tagged: SlotRecord, **changes) -> SourceFacts:
    facts = SourceFacts("vm", "u-1", migration, "audit", False, "audit", tagged, True, True)
    return dataclasses.replace(facts, **changes)


def test_a_domain_without_ncdma_migrates_plainly_without_asking_the_destination() -> None:
    decision = decide_migration(source(None), None, OPTIONS)
    assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.PLAIN


def test_no_tagged_slot_migrates_plainly_whatever_the_policy() -> None:
    for policy in ("refuse", "skip", "copy"):
        decision = decide_migration(source(policy), READY, OPTIONS)
        assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.PLAIN


def test_refuse_names_the_slots_and_the_way_out() -> None:
    refusal = decide_migration(source("refuse", VRAM), READY, OPTIONS)
    assert isinstance(refusal, MigrationRefusal)
    assert "migration='refuse'" in refusal.reason and "0xfc000000" in refusal.reason
    assert "ncdma enable vm --migration copy" in refusal.reason


def test_skip_is_refused_when_qemu_streams_a_tagged_slot() -> None:
    refusal = decide_migration(source("skip", VRAM, BLOB), READY, OPTIONS)
    assert isinstance(refusal, MigrationRefusal)
    assert "vga.vram" in refusal.reason and "in QEMU's RAM stream" in refusal.reason
    assert "(hostmem)" not in refusal.reason  # only the streamed slot is the problem
    assert "migration='copy'" in refusal.reason


def test_skip_goes_ahead_when_no_tagged_slot_is_in_qemus_stream() -> None:
    decision = decide_migration(source("skip", BLOB), READY, OPTIONS)
    assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.SKIP
    assert not BLOB.in_qemu_stream and VRAM.in_qemu_stream


def test_copy_goes_ahead_on_a_ready_destination() -> None:
    decision = decide_migration(source("copy", VRAM), READY, OPTIONS)
    assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.COPY


@pytest.mark.parametrize("facts, destination, options, words", [
    (source("copy", VRAM, capture_at_exit=False), READY, OPTIONS, "shareable device RAM"),
    (source("copy", VRAM, guard_alive=False), READY, OPTIONS, "guard is not running"),
    (source("copy", VRAM), {**READY, "aux_ram_share": False, "qemu": "7.2.19"}, OPTIONS,
     "QEMU 7.2.19 lacks -machine aux-ram-share"),
    (source("copy", VRAM), READY, dataclasses.replace(OPTIONS, postcopy=True), "--postcopy"),
    (source("copy", VRAM), READY, dataclasses.replace(OPTIONS, offline=True),
     "--offline moves only its definition, and it runs with 1 tagged slot(s)"),
    (source("copy", VRAM), {**READY, "hook_installed": False}, OPTIONS, "libvirt hook"),
    (source("copy", VRAM), {**READY, "guard_service": False}, OPTIONS, "guard service"),
    (source("copy", VRAM), {**READY, "ncdma": "0.0.1"}, OPTIONS,
     f"it runs ncdma 0.0.1, this host {__version__} (install the same version on both"),
    (source("copy", VRAM), {**READY, "mode": "none", "reasons": ["no /dev/kvm"]}, OPTIONS,
     "cannot guard VMs at all: no /dev/kvm"),
    (source("copy", VRAM, requested="enforce", require=True), READY, OPTIONS,
     "requires enforce mode but it allows audit"),
])
def test_copy_refusals_say_why(facts, destination, options, words) -> None:
    refusal = decide_migration(facts, destination, options)
    assert isinstance(refusal, MigrationRefusal) and words in refusal.reason, refusal


def test_a_destination_that_cannot_tag_is_fine_for_a_domain_without_tagged_slots() -> None:
    decision = decide_migration(source("copy"), {**READY, "mode": "none", "reasons": ["x"]}, OPTIONS)
    assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.PLAIN


VM_SOURCE = dict(method="vm", mode="enforce", requested="enforce")


@pytest.mark.parametrize("destination, problem", [
    ({**READY, "methods": [], "vm_reasons": ["kernel 6.1.0 does not offer "
                                             "KVM_X86_QUIRK_IGNORE_GUEST_PAT (0x200)"]},
     "does not offer KVM_X86_QUIRK_IGNORE_GUEST_PAT"),
    ({**READY, "mode": "enforce", "methods": ["slot"], "vm_reasons": ["CPU lacks self-snoop"]},
     "CPU lacks self-snoop"),
    ({**READY, "mode": "enforce"}, "its ncdma does not know method vm"),  # an older peer
])
def test_method_vm_needs_a_destination_that_allows_vm(destination, problem) -> None:
    refusal = decide_migration(source("copy", **VM_SOURCE), destination, OPTIONS)
    assert isinstance(refusal, MigrationRefusal) and "\n" not in refusal.reason
    assert "honors guest PAT for the whole VM (method vm) but the destination does not allow "\
        "method vm" in refusal.reason and problem in refusal.reason


def test_method_vm_migrates_to_a_destination_that_allows_vm() -> None:
    destination = {**READY, "methods": ["vm"], "vm_reasons": []}
    decision = decide_migration(source("copy", **VM_SOURCE), destination, OPTIONS)
    assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.PLAIN
    # blob slots the guard selected are still carried as the policy says (dirty logging
    # cannot see a device's writes, whatever the method)
    assert decide_migration(source("copy", BLOB, **VM_SOURCE), destination, OPTIONS).strategy \
        is Strategy.COPY


def test_method_vm_in_audit_or_method_slot_asks_nothing_of_the_destination_method() -> None:
    bare = {**READY, "methods": [], "vm_reasons": ["no quirk"]}
    assert isinstance(decide_migration(source("copy", method="vm"), bare, OPTIONS), MigrationDecision)
    assert isinstance(decide_migration(source("copy", mode="enforce"), bare, OPTIONS), MigrationDecision)


def test_the_decision_reads_the_record_not_its_words() -> None:
    """An owner whose name reads like vram does not make a hostmem blob streamed."""
    misleading = selected(9, 0x380000000000, 0x200000,
                          SlotOwner(OwnerKind.HOSTMEM, "vram (gpu)", 4, "x vram (y)"), True)
    decision = decide_migration(source("skip", misleading), READY, OPTIONS)
    assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.SKIP


def test_any_migrates_plainly_and_says_what_that_means_for_the_tagged_slots() -> None:
    decision = decide_migration(source("any", VRAM, BLOB), READY, OPTIONS)
    assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.PLAIN
    [note] = [note for note in decision.notes if "migration='any'" in note]
    assert "not verified" in note and "2 tagged slot(s)" in note
