"""`ncdma migrate --finish`: the kept capture is found by the domain's name or UUID and every
slot's file is checked against its capture's checksum before anything is sent (real files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ncdma.cli.main import build_parser
from ncdma.errors import MigrationRefused, UsageError
from ncdma.migrate.finish import kept_capture
from ncdma.migrate.options import MigrateOptions
from ncdma.settings import Settings
from ncdma.model.slot import OwnerKind, SlotDecision, SlotOwner, SlotRecord
from ncdma.store.capture import (KeptMigration, data_name, migration_dir, remember,
                                 write_result)

UUID = "5e1f0f3c-7a64-4d2b-9a0e-3c1d2b4a5f60"
SLOT = SlotRecord(6, 0, 0xE0000000, 4096, 0x7F0000000000, SlotDecision.TAG, "selected",
                  SlotOwner(OwnerKind.VRAM, "video0", 0, "0000:00:02.0/vga.vram"), False, True)
FILE = data_name(SLOT)
CONTENT = bytes(range(256)) * 16


def _kept(tmp_path: Path, captured: bool = True, error: str | None = None) -> Settings:
    """A state directory as a copy migration left it: where it went, and the capture."""
    settings = Settings(state_dir=tmp_path)
    migration_dir(settings, UUID).mkdir(parents=True)
    remember(settings, KeptMigration(UUID, "vm1", "qemu+ssh://h2/system", "/opt/ncdma/ncdma"))
    if captured:
        (migration_dir(settings, UUID) / FILE).write_bytes(CONTENT)
        write_result(settings, UUID, [] if error else [
            {**SLOT.to_json(), "file": FILE, "sha256": hashlib.sha256(CONTENT).hexdigest()}],
            error)
    return settings


@pytest.mark.parametrize("name", ["vm1", UUID])
def test_the_kept_capture_is_found_by_name_or_uuid(tmp_path: Path, name: str) -> None:
    kept, captured = kept_capture(_kept(tmp_path), name)
    assert (kept.uuid, kept.domain, kept.desturi) == (UUID, "vm1", "qemu+ssh://h2/system")
    assert [slot["gpa"] for slot in captured["slots"]] == [SLOT.gpa]


def test_nothing_kept_for_another_domain(tmp_path: Path) -> None:
    with pytest.raises(MigrationRefused, match="nothing is kept on this host for vm2"):
        kept_capture(_kept(tmp_path), "vm2")


def test_a_slot_file_that_differs_from_its_checksum_is_refused(tmp_path: Path) -> None:
    settings = _kept(tmp_path)
    path = migration_dir(settings, UUID) / FILE
    path.write_bytes(b"\1" + CONTENT[1:])
    with pytest.raises(MigrationRefused, match="slot 0xe0000000's kept content does not match"):
        kept_capture(settings, "vm1")
    path.unlink()
    with pytest.raises(MigrationRefused, match="cannot be read"):
        kept_capture(settings, "vm1")


@pytest.mark.parametrize("captured, error, words", [
    (False, None, "were never captured"),
    (True, "the capture's deadline (8 s after QEMU's exit began) passed", "capture failed: the"),
])
def test_a_capture_that_never_happened_or_failed_is_refused(tmp_path: Path, captured: bool,
                                                            error: str | None,
                                                            words: str) -> None:
    with pytest.raises(MigrationRefused, match=words) as refused:
        kept_capture(_kept(tmp_path, captured, error), "vm1")
    assert "virsh resume" in refused.value.hint


def test_destination_uri_is_needed_except_with_finish() -> None:
    parser = build_parser()
    finish = MigrateOptions.from_args(parser.parse_args(["migrate", "--finish", "vm1"]))
    assert finish.finish and finish.desturi == ""
    with pytest.raises(UsageError, match="DESTURI is missing"):
        MigrateOptions.from_args(parser.parse_args(["migrate", "vm1"]))
