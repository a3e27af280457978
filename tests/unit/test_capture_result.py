"""What a capture at QEMU's exit leaves for `ncdma migrate` when no guard can read the slots
(issue 13, item 3): nothing read, the migration marked not copied, and the test-only slow
fault point (real files, real clock)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ncdma.guard.capture import not_captured
from ncdma.guard.faults import Faults
from ncdma.model.slot import SlotDecision, SlotOwner, SlotRecord
from ncdma.settings import Settings
from ncdma.store.capture import arm, read_captured

UUID = "5e1f0f3c-7a64-4d2b-9a0e-3c1d2b4a5f60"
LOG = logging.getLogger("test")


def test_an_armed_capture_is_marked_not_copied_with_the_reason(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    arm(settings, UUID, [SlotRecord(6, 0, 0xE0000000, 4096, 0x7F0000000000, SlotDecision.TAG,
                                    "selected", SlotOwner(), False, False)])
    not_captured(settings, UUID, LOG, "no guard could run at QEMU's exit")
    assert read_captured(settings, UUID) == {
        "slots": [], "error": "no guard could run at QEMU's exit: not copied"}


def test_without_a_migration_nothing_is_written(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    not_captured(settings, UUID, LOG, "no guard could run at QEMU's exit")
    assert read_captured(settings, UUID) is None


def test_the_slow_point_sleeps_until_asked_once_and_only_when_armed(tmp_path: Path) -> None:
    armed = tmp_path / "fault"
    armed.write_text("capture:slow\n")
    faults = Faults(armed)
    faults.slow("after-answer:tag", time.monotonic() + 60)  # another point: no sleep
    until = time.monotonic() + 0.2
    faults.slow("capture:slow", until)
    assert time.monotonic() >= until and not armed.exists()
    began = time.monotonic()
    faults.slow("capture:slow", began + 60)  # fired once already
    Faults(None).slow("capture:slow", began + 60)  # fault injection off
    assert time.monotonic() - began < 30  # a hang detector, not a timing check
