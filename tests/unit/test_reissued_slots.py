"""C1: a tagged slot that QEMU re-issues with only its flags changed stays selected.

QEMU re-issues a slot (same id, GPA, size and host address) when it turns dirty logging on or
off for it: a RAM-backed hostmem blob mapping when a migration starts and when it ends or is
cancelled. In enforce mode the guard keeps the flag on the re-issue; the migration must still
see that slot: the source's preflight (refuse refuses, copy copies it) and the destination's
check. The stream below is the one QEMU makes for such a slot (flags 0, then LOG_DIRTY_PAGES
at migration start, then 0 at a cancel), run through the guard's own classifier and journal.
"""

from __future__ import annotations

import os
from pathlib import Path

from ncdma.migrate import peer
from ncdma.guard.classify import classify
from ncdma.store.journal import Journal, read_journal
from ncdma.model.layout import BarWindow, GpuDevice, Layout, RamBlock
from ncdma.kvm.memslot import Memslot
from ncdma import __version__
from ncdma.migrate.options import MigrateOptions
from ncdma.migrate.preflight import (MigrationDecision, MigrationRefusal, Strategy,
                                     decide_migration)
from ncdma.migrate.source import gather_source
from ncdma.model.plan import Plan
from ncdma.model.policy import PolicyMode
from ncdma.settings import Settings
from ncdma.store.state import GUARD_PID_FILE, write_plan
from ncdma.model.verdict import Mode

REPO = Path(__file__).resolve().parents[2]
UUID = "c1c1c1c1-0000-4000-8000-000000000001"
HOSTMEM = 0x380000000000
BLOB = Memslot(9, 0, HOSTMEM + 0x100000, 0x200000, 0x7F1000000000)
LOG_DIRTY_PAGES = 0x1
STAND_IN_FLAG = 0x2
VRAM = RamBlock("0000:00:02.0/vga.vram", 0x8000000, 0x800000, 0x800000, 0x7E00000000)
LAYOUT = Layout(
    (10, 0, 0),
    (GpuDevice("video0", "virtio-vga", "/machine/peripheral/video0", "0000:00:02.0",
               0x4000000, (BarWindow(4, HOSTMEM, 0x4000000, "hostmem", True, True),), VRAM),),
    (RamBlock("pc.ram", 0, 0x8000000, 0x8000000, 0x7F0000000000), VRAM),
    ((0x7F0000000000, 0x8000000),), ((0, 0x8000000),), 0.0)
OPTIONS = MigrateOptions("vm", "qemu+ssh://h2/system", live=True)
READY = {"ncdma": __version__, "hook_installed": True, "guard_service": True, "wrapper": True, "mode": "enforce",
         "reasons": [], "aux_ram_share": True, "qemu": "10.0.13"}


def guard_journal(directory: Path, *flag_changes: int) -> Journal:
    """What the enforce-mode guard journals for the blob's creation and its re-issues."""
    journal = Journal(directory, "enforce", STAND_IN_FLAG, 4242, True)
    for flags in (0, *flag_changes):
        request = Memslot(BLOB.slot, flags, BLOB.gpa, BLOB.size, BLOB.hva)
        decision = classify(request, LAYOUT, {"hostmem"}, journal.flagged)
        assert decision.decision.wants_flag
        journal.record(request, decision, True)
    journal.save()
    return journal


def settings_with_plan(tmp_path: Path, migration: str) -> Settings:
    settings = Settings(state_dir=tmp_path / "state", log_file=None, syslog=False)
    write_plan(settings, Plan("vm", UUID, PolicyMode.ENFORCE, Mode.ENFORCE, True, ("hostmem",),
                              migration, STAND_IN_FLAG, "/usr/bin/qemu-system-x86_64",
                              ("video0",), (), True))
    return settings


def source_decision(tmp_path: Path, migration: str, *flag_changes: int) -> MigrationDecision | MigrationRefusal:
    settings = settings_with_plan(tmp_path, migration)
    guard_journal(settings.domain_dir(UUID), *flag_changes)
    (settings.domain_dir(UUID) / GUARD_PID_FILE).write_text(f"{os.getpid()}\n")  # alive
    xml = (REPO / "xml/examples/virtio-vga-opted-in.xml").read_text()
    facts = gather_source(settings, "vm", UUID, xml)
    return decide_migration(facts, READY, OPTIONS)


def test_refuse_refuses_after_qemu_turned_dirty_logging_on_for_the_tagged_slot(tmp_path) -> None:
    decision = source_decision(tmp_path, "refuse", LOG_DIRTY_PAGES)
    assert isinstance(decision, MigrationRefusal), f"migrated as {decision}"
    assert f"{BLOB.gpa:#x}" in decision.reason


def test_refuse_refuses_after_a_cancelled_migration_toggled_logging_on_and_off(tmp_path) -> None:
    decision = source_decision(tmp_path, "refuse", LOG_DIRTY_PAGES, 0)
    assert isinstance(decision, MigrationRefusal), f"migrated as {decision}"


def test_copy_still_copies_the_re_issued_slot(tmp_path) -> None:
    decision = source_decision(tmp_path, "copy", LOG_DIRTY_PAGES, 0)
    assert isinstance(decision, MigrationDecision) and decision.strategy is Strategy.COPY
    assert [slot.gpa for slot in decision.source.selected] == [BLOB.gpa]
    assert decision.source.selected[0].flag_set


def test_the_destination_accepts_a_slot_its_guard_re_issued(tmp_path) -> None:
    guard_journal(tmp_path, LOG_DIRTY_PAGES)
    journal = read_journal(tmp_path)
    assert journal is not None
    target = peer._tagged_slot(journal, BLOB.gpa, BLOB.size)  # raises if not selected
    assert target.slot == BLOB.slot and target.flag_set
