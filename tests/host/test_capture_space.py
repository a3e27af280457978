"""A capture's files never take the space the guards' journals need (issue 13, item 7).

The state directory is a tmpfs of its own here, as /run is on a host: a capture that would
leave less than JOURNAL_RESERVE free, or that does not fit, is a clean refusal before
anything moves, and leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ncdma.errors import MigrationRefused
from ncdma.settings import Settings
from ncdma.model.slot import OwnerKind, SlotDecision, SlotOwner, SlotRecord
from ncdma.store.capture import JOURNAL_RESERVE, arm, migration_dir
from tests.host.conftest import mounted_tmpfs

MiB = 1 << 20
UUID = "5e1f0f3c-7a64-4d2b-9a0e-3c1d2b4a5f60"


@pytest.fixture
def small_state(short_tmp: Path) -> Iterator[Settings]:
    """Settings whose state directory is a 32 MiB tmpfs."""
    with mounted_tmpfs(short_tmp / "state", "32m") as state:
        yield Settings(state_dir=state)


def _slot(size: int) -> SlotRecord:
    return SlotRecord(6, 0, 0xE0000000, size, 0x7F0000000000, SlotDecision.TAG,
                      "selected", SlotOwner(OwnerKind.VRAM, "video0", 0), True, True)


def test_a_capture_that_fits_beside_the_reserve_is_armed(small_state: Settings) -> None:
    directory = arm(small_state, UUID, [_slot(8 * MiB)])
    assert (directory / "slot-e0000000.bin").stat().st_blocks * 512 >= 8 * MiB


@pytest.mark.parametrize("size", [32 * MiB - JOURNAL_RESERVE + MiB, 64 * MiB])
def test_a_capture_eating_into_the_reserve_or_too_big_is_refused(small_state: Settings,
                                                                 size: int) -> None:
    with pytest.raises(MigrationRefused, match="MiB free") as refused:
        arm(small_state, UUID, [_slot(size)])
    assert "kept for the guards' journals" in str(refused.value)
    assert not migration_dir(small_state, UUID).exists()
